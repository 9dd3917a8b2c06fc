// Command stack starts Switchboard's local stack and the local Apache Kafka
// cluster:
//
//	stack run [--kafka devbroker|apache|HOST:PORT,...]   the whole stack (make run)
//	stack kafka up|down|status                            three KRaft nodes on 127.0.0.1:29092-29094 (make kafka-up)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := dispatch(ctx, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "stack:", err)
		}
		return 1
	}
	return 0
}

func dispatch(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: stack run [flags] | stack kafka up|down|status [flags]")
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], os.Stdout)
	case "kafka":
		return kafkaCmd(ctx, args[1:], os.Stdout)
	}
	return fmt.Errorf("unknown command %q (run, kafka)", args[0])
}
