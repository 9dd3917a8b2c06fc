// Command loadtest drives load through Switchboard and accounts for every
// request; see internal/loadtest and docs/BENCHMARKS.md.
//
//	loadtest --stack --scenarios all --out bench/run1     # start a local stack per scenario, run the suite
//	loadtest --scenarios baseline --rate 500 --duration 30s  # against a running stack (make run)
//	loadtest compare bench/run1/suite.json bench/run2/suite.json
//
// Exit status: 0 when the suite ran (and with --strict every check passed),
// 1 when a check failed with --strict, 2 when the suite could not run.
package main

import (
	"fmt"
	"os"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/loadtest"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "compare" {
		if len(os.Args) != 4 {
			fmt.Fprintln(os.Stderr, "usage: loadtest compare A.json B.json (a suite.json or a <scenario>.json each)")
			os.Exit(2)
		}
		if err := loadtest.CompareFiles(os.Stdout, os.Args[2], os.Args[3]); err != nil {
			fmt.Fprintln(os.Stderr, "loadtest compare:", err)
			os.Exit(2)
		}
		return
	}
	// Errors only by default: during chaos the Kafka clients warn about
	// every refused reconnection, which is the point of the scenario.
	d := daemon.New(daemon.Program{Name: "loadtest", Kafka: true, Topics: true, LogFormat: "text", LogLevel: "error"})
	o := newOptions(d.Flags)
	d.Main(o.run)
}
