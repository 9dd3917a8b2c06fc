package loadtest

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat times; it is
// 100 on every mainstream architecture.
const clockTicks = 100

// procSample reads a process's user+system CPU time and resident memory
// from /proc (Linux only); ok is false when the process cannot be read.
func procSample(pid int) (cpu time.Duration, rssBytes int64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// Fields after the command name (which may hold spaces) start after
	// the last ')'; utime and stime are fields 14 and 15 of the line, and
	// state (field 3) is the first after the name.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 || fields[0] == "Z" {
		return 0, 0, false
	}
	u, err1 := strconv.ParseInt(fields[11], 10, 64)
	st, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	cpu = time.Duration(u+st) * time.Second / clockTicks
	if status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(status))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					rssBytes = kb * 1024
				}
			}
		}
	}
	return cpu, rssBytes, true
}

// procWatch samples the CPU and memory of named processes once a second.
// A name whose PID changes (a restarted process) keeps one running CPU
// total: the new process's time is added to the old one's.
type procWatch struct {
	pids  func() map[string]int
	begin time.Time

	mu    sync.Mutex
	procs map[string]*procTrack
}

type procTrack struct {
	pid      int
	last     time.Duration // last reading of the current pid
	total    time.Duration // CPU of earlier pids plus last
	restarts int
	maxRSS   int64
	cpu      []Point // cumulative CPU seconds
	cores    []Point
	rss      []Point
}

func newProcWatch(pids func() map[string]int, begin time.Time) *procWatch {
	return &procWatch{pids: pids, begin: begin, procs: map[string]*procTrack{}}
}

func (w *procWatch) sample(now time.Time) {
	if w.pids == nil {
		return
	}
	t := now.Sub(w.begin).Seconds()
	pids := w.pids()
	w.mu.Lock()
	defer w.mu.Unlock()
	for name, pid := range pids {
		cpu, rss, ok := procSample(pid)
		if !ok {
			continue
		}
		p := w.procs[name]
		if p == nil {
			p = &procTrack{pid: pid, last: cpu, total: cpu}
			w.procs[name] = p
		}
		if pid != p.pid {
			p.pid, p.last = pid, 0
			p.restarts++
		}
		prevTotal := p.total
		p.total += cpu - p.last
		p.last = cpu
		if n := len(p.cpu); n > 0 {
			if dt := t - p.cpu[n-1].T; dt > 0 {
				p.cores = append(p.cores, Point{t, (p.total - prevTotal).Seconds() / dt})
			}
		}
		p.cpu = append(p.cpu, Point{t, p.total.Seconds()})
		p.rss = append(p.rss, Point{t, float64(rss) / (1 << 20)})
		p.maxRSS = max(p.maxRSS, rss)
	}
}

// report returns each process's use between from and to (seconds since
// begin), with CPU per request over requests.
func (w *procWatch) report(from, to float64, requests int) (map[string]*ProcessReport, map[string][]Point, map[string][]Point) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*ProcessReport{}
	cores, rss := map[string][]Point{}, map[string][]Point{}
	for name, p := range w.procs {
		r := &ProcessReport{MaxRSSMB: float64(p.maxRSS) / (1 << 20), Restarts: p.restarts}
		a, b := at(p.cpu, from), at(p.cpu, to)
		if b.T > a.T {
			r.CPUSeconds = b.V - a.V
			r.AvgCores = r.CPUSeconds / (b.T - a.T)
			if requests > 0 {
				r.CPUPerRequestMS = r.CPUSeconds * 1000 / float64(requests)
			}
		}
		out[name] = r
		cores[name], rss[name] = p.cores, p.rss
	}
	return out, cores, rss
}

// at returns the sample of a series nearest to t.
func at(s []Point, t float64) Point {
	var best Point
	for i, p := range s {
		if i == 0 || abs(p.T-t) < abs(best.T-t) {
			best = p
		}
	}
	return best
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
