package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// browserPage opens the conversation's stream twice, as a web page would
// with a stream token and no API key: an EventSource (?token=) and a
// WebSocket (subprotocol switchboard.token.TOKEN). It writes what arrives
// into #sse and #ws, and errors into #errors.
const browserPage = `<!doctype html>
<html><body><pre id="sse"></pre><pre id="ws"></pre><pre id="errors"></pre>
<script>
const egress = %q, conv = %q, token = %q;
const log = (id, s) => { document.getElementById(id).textContent += s + "\n"; };
const es = new EventSource(egress + "/v1/conversations/" + conv + "/events?token=" + encodeURIComponent(token));
for (const name of ["chunk", "result", "end"]) es.addEventListener(name, () => log("sse", name));
es.onerror = () => log("errors", "sse error, readyState " + es.readyState);
const ws = new WebSocket(egress.replace(/^http/, "ws") + "/v1/conversations/" + conv + "/ws", ["switchboard.token." + token]);
ws.onmessage = (m) => log("ws", JSON.parse(m.data).event);
ws.onerror = () => log("errors", "ws error");
</script></body></html>`

// TestBrowserOpensStreamWithToken: headless Chromium opens an egress
// stream from a page on another origin with a stream token (never the API
// key): over EventSource and WebSocket it gets the conversation's answer.
// It needs Debian's chromium and chromium-driver (.ci/run installs them);
// without them it skips, except in CI.
func TestBrowserOpensStreamWithToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries and a browser")
	}
	chromium, driver := findBrowser(t)
	page := newPageServer(t)
	s := apptest.StartStack(t, bin, apptest.StackOptions{
		EgressArgs: []string{"--cors-origins", page.origin, "--ws-origins", strings.TrimPrefix(page.origin, "http://")}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The application's server mints the token with its key and sends a message.
	code, _, b := send(ctx, t, "POST", s.EgressURL+"/v1/stream-tokens", `{"conversation_ids":["browser-1"]}`, nil)
	var minted struct{ Token string }
	if code != http.StatusOK || json.Unmarshal(b, &minted) != nil || minted.Token == "" {
		t.Fatalf("mint a stream token: %d %s", code, b)
	}
	page.html = fmt.Sprintf(browserPage, s.EgressURL, "browser-1", minted.Token)

	wd := startWebDriver(ctx, t, driver, chromium)
	wd.open(page.origin + "/")
	code, _, b = send(ctx, t, "POST", s.IngressURL+"/v1/conversations/browser-1/messages",
		`{"model":"sim","stream":true,"messages":[{"role":"user","content":"hi from a browser"}]}`, nil)
	if code != http.StatusAccepted {
		t.Fatalf("submit: %d %s", code, b)
	}
	var sse, ws, errs string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		sse, ws, errs = wd.text("sse"), wd.text("ws"), wd.text("errors")
		if strings.Contains(sse, "result") && strings.Contains(ws, "result") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not get the answer within 30s: sse %q, ws %q, errors %q", sse, ws, errs)
		}
	}
	if !strings.Contains(sse, "chunk") || errs != "" {
		t.Errorf("the page's streams: sse %q, ws %q, errors %q; want chunks and no errors", sse, ws, errs)
	}
}

func findBrowser(t *testing.T) (chromium, driver string) {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			chromium = p
			break
		}
	}
	driver, _ = exec.LookPath("chromedriver")
	if chromium == "" || driver == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CI needs chromium and chromedriver (apt-get install chromium chromium-driver)")
		}
		t.Skip("no chromium and chromedriver on this machine (apt-get install chromium chromium-driver)")
	}
	return chromium, driver
}

// pageServer serves one HTML page on its own origin.
type pageServer struct {
	origin string
	html   string
}

func newPageServer(t *testing.T) *pageServer {
	t.Helper()
	p := &pageServer{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, p.html)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	p.origin = "http://" + ln.Addr().String()
	return p
}

// webDriver is a chromedriver session, spoken to over the W3C WebDriver
// protocol (plain HTTP and JSON).
type webDriver struct {
	t       *testing.T
	ctx     context.Context
	base    string
	session string
}

func startWebDriver(ctx context.Context, t *testing.T, driver, chromium string) *webDriver {
	t.Helper()
	port := apptest.FreePort(t)
	p := apptest.Start(t, "chromedriver", driver, fmt.Sprintf("--port=%d", port), "--allowed-ips=127.0.0.1")
	wd := &webDriver{t: t, ctx: ctx, base: fmt.Sprintf("http://127.0.0.1:%d", port)}
	if err := apptest.WaitHTTP(ctx, wd.base+"/status", 20*time.Second); err != nil {
		t.Fatalf("chromedriver: %v\n%s", err, p.Output())
	}
	var created struct {
		Value struct {
			SessionID string `json:"sessionId"`
		} `json:"value"`
	}
	wd.call("POST", "/session", map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{
		"goog:loggingPrefs": map[string]string{"browser": "ALL"}, // read by browserLog
		"goog:chromeOptions": map[string]any{"binary": chromium,
			"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"}},
	}}}, &created)
	if created.Value.SessionID == "" {
		t.Fatal("chromedriver made no session")
	}
	wd.session = "/session/" + created.Value.SessionID
	t.Cleanup(func() { // the browser goes with its session; then chromedriver (Start's cleanup)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, wd.base+wd.session, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return wd
}

func (wd *webDriver) call(method, path string, in, out any) {
	wd.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequestWithContext(wd.ctx, method, wd.base+path, body)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		wd.t.Fatalf("webdriver %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		wd.t.Fatalf("webdriver %s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			wd.t.Fatalf("webdriver %s %s: %v", method, path, err)
		}
	}
}

func (wd *webDriver) open(url string) {
	wd.call("POST", wd.session+"/url", map[string]string{"url": url}, nil)
}

// text returns the text of the element with id.
func (wd *webDriver) text(id string) string {
	var out struct{ Value string }
	wd.call("POST", wd.session+"/execute/sync", map[string]any{
		"script": "return document.getElementById(arguments[0]).textContent", "args": []string{id}}, &out)
	return out.Value
}
