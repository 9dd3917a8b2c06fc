package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// profileWindow bounds a CPU profile: long enough to be representative,
// short enough that a long run's profile still ends inside its load.
const profileWindow = 30 * time.Second

// profiles fetches, from every service's admin URL (served with --pprof),
// a CPU profile of the measured window (from the warm-up's end, at most
// profileWindow) and then a heap profile, into
// dir/<scenario>.<process>.cpu.pprof and .heap.pprof. It returns the
// files written; a service that does not answer is named in the error
// but does not stop the others.
func profiles(ctx context.Context, dir, scenario string, urls map[string]string, window time.Duration) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	seconds := max(1, int(min(window, profileWindow)/time.Second))
	names := make([]string, 0, len(urls))
	for n := range urls {
		names = append(names, n)
	}
	sort.Strings(names)
	var (
		mu    sync.Mutex
		files []string
		errs  []error
		wg    sync.WaitGroup
	)
	for _, name := range names {
		wg.Go(func() {
			for _, p := range []struct{ kind, path string }{
				{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)},
				{"heap", "/debug/pprof/heap"},
			} {
				file := filepath.Join(dir, fmt.Sprintf("%s.%s.%s.pprof", scenario, name, p.kind))
				err := fetchTo(ctx, urls[name]+p.path, file, time.Duration(seconds)*time.Second+30*time.Second)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s %s profile: %w", name, p.kind, err))
				} else {
					files = append(files, file)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(files)
	if len(errs) > 0 {
		return files, fmt.Errorf("loadtest: profiles: %v", errs)
	}
	return files, nil
}

// fetchTo writes the body of a GET of url to file.
func fetchTo(ctx context.Context, url, file string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s %s", url, resp.Status, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
