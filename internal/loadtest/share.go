package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// instanceWork is one service's counter of work done, read from each of
// its instances' /metrics: which family, and a label that a counted
// series has (empty: every series).
type instanceWork struct {
	service, family, label string
	admin                  []string // the instances' admin base URLs
}

// shareCheck reads, from every instance of a stack that runs more than one
// of some service, how much of the run's work it did (ingress: accepted
// submissions; router-worker: finished requests; egress: events sent), and
// passes when every instance of those services did some: the load was
// spread, as a load balancer and the consumer group would spread it. A
// stack of one instance each gives no check.
func shareCheck(ctx context.Context, st *Stack) (Check, bool) {
	var ing, eg []string
	for _, e := range st.Ingresses {
		ing = append(ing, e.AdminURL)
	}
	for _, e := range st.Egresses {
		eg = append(eg, e.AdminURL)
	}
	works := []instanceWork{
		{service: ProcIngress, family: "switchboard_ingress_requests_total", label: `code="2`, admin: ing},
		{service: ProcRouter, family: "switchboard_router_requests_total", admin: st.RouterURLs},
		{service: ProcEgress, family: "switchboard_egress_events_sent_total", admin: eg},
	}
	var parts []string
	pass, several := true, false
	for _, w := range works {
		if len(w.admin) < 2 {
			continue
		}
		several = true
		var counts []string
		for _, u := range w.admin {
			n, err := scrapeSum(ctx, u+"/metrics", w.family, w.label)
			if err != nil {
				pass = false
				counts = append(counts, "?")
				continue
			}
			if n <= 0 {
				pass = false
			}
			counts = append(counts, strconv.FormatFloat(n, 'f', 0, 64))
		}
		parts = append(parts, fmt.Sprintf("%s %s", w.service, strings.Join(counts, "/")))
	}
	if !several {
		return Check{}, false
	}
	return Check{Name: "every instance took a share", Pass: pass,
		Detail: "work per instance (ingress: accepted, router-worker: finished, egress: events sent): " + strings.Join(parts, ", ")}, true
}

// scrapeSum sums the samples of a counter family on a Prometheus text page
// whose labels contain label (empty: all).
func scrapeSum(ctx context.Context, url, family, label string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s: %s", url, resp.Status)
	}
	return sumFamily(bufio.NewScanner(resp.Body), family, label)
}

// sumFamily sums the samples of family (name{…} value or name value) whose
// labels contain label.
func sumFamily(sc *bufio.Scanner, family, label string) (float64, error) {
	sum := 0.0
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, family)
		if !ok || rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		labels := ""
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			if end < 0 {
				continue
			}
			labels, rest = rest[:end+1], rest[end+1:]
		}
		if label != "" && !strings.Contains(labels, label) {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			continue
		}
		sum += v
	}
	return sum, sc.Err()
}
