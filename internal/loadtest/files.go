package loadtest

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFiles writes the suite's reports: into dir (when set) suite.json,
// report.html and summary.txt; to jsonPath and htmlPath (when set) the
// suite as JSON and the HTML report. stdout hears where dir's files are.
func (s *Suite) WriteFiles(stdout io.Writer, dir, jsonPath, htmlPath string) error {
	var errs []error
	writeHTML := func(path string) {
		f, err := os.Create(path)
		if err != nil {
			errs = append(errs, err)
			return
		}
		errs = append(errs, WriteHTML(f, s), f.Close())
	}
	if dir != "" {
		errs = append(errs, WriteJSON(filepath.Join(dir, "suite.json"), s))
		writeHTML(filepath.Join(dir, "report.html"))
		f, err := os.Create(filepath.Join(dir, "summary.txt"))
		if err == nil {
			fmt.Fprintf(f, "command: %s\n", s.Command)
			for _, r := range s.Reports {
				r.WriteSummary(f)
			}
			errs = append(errs, f.Close())
		} else {
			errs = append(errs, err)
		}
		fmt.Fprintf(stdout, "\nreports in %s: suite.json, report.html, summary.txt, <scenario>.json\n", dir)
	}
	if jsonPath != "" {
		errs = append(errs, WriteJSON(jsonPath, s))
	}
	if htmlPath != "" {
		writeHTML(htmlPath)
	}
	return errors.Join(errs...)
}

// CompareFiles reads two suites (a suite.json or a <scenario>.json each)
// and writes their comparison to w.
func CompareFiles(w io.Writer, pathA, pathB string) error {
	a, err := ReadSuite(pathA)
	if err != nil {
		return err
	}
	b, err := ReadSuite(pathB)
	if err != nil {
		return err
	}
	WriteComparison(w, a, b, pathA, pathB)
	return nil
}
