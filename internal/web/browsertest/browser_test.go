// Package browsertest tests the dashboard of redisrpc web in a real headless
// browser (Chromium, driven by chromedp). It is a module of its own, so that
// the core takes no dependency on chromedp, and skips, saying why, where no
// Chromium is installed.
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/redis/rueidis"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/keys"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/internal/web"
	"github.com/redisrpc/redisrpc/redisrpctest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// chromium returns the browser to drive, or skips.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no Chromium on PATH: apt-get install chromium (CI installs it)")
	return ""
}

// browser returns a chromedp context of a fresh headless Chromium.
func browser(t *testing.T) context.Context {
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1100),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(cancel)
	ctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var (
	add = redisrpc.NewEndpoint[float64, float64]("add")
	clr = redisrpc.NewEndpoint[struct{}, float64]("clr")
	div = redisrpc.NewEndpoint[float64, float64]("div")
)

// calc serves a calculator on queue until the test ends, or until stop.
func calc(t *testing.T, rc rueidis.Client, queue string) (stop func()) {
	var acc float64
	mux := redisrpc.NewMux(rc, queue, redisrpc.WithLogger(quiet), redisrpc.WithHeartbeat(time.Second))
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { acc += x; return acc, nil })
	redisrpc.Handle(mux, clr, func(context.Context, struct{}) (float64, error) { acc = 0; return 0, nil })
	redisrpc.Handle(mux, div, func(_ context.Context, x float64) (float64, error) {
		if x == 0 {
			return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "division by zero")
		}
		acc /= x
		return acc, nil
	})
	served := make(chan error, 1)
	go func() { served <- mux.Serve(context.Background()) }()
	select { // running, as calc serve is before its dashboard is opened
	case <-mux.Ready():
	case err := <-served:
		t.Fatalf("serving the calculator: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			mux.Shutdown(context.Background())
			<-served
		}
	}
	t.Cleanup(stop)
	return stop
}

// dashboard serves the dashboard of rc, actions allowed, until the test ends.
func dashboard(t *testing.T, rc rueidis.Client) string {
	d := web.New(rc, true, quiet)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	ts := httptest.NewServer(d.Handler())
	t.Cleanup(func() { ts.Close(); cancel(); <-done })
	return ts.URL
}

// card is the selector of a service's card.
func card(queue string) string { return fmt.Sprintf(`section[id="service-%s"]`, queue) }

// css is a CSS selector for chromedp.
func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// TestDashboard: the page shows the calculator, its server and its
// functions within 2 s of loading; a call made through the page shows its
// answer, and a failure its code; when the server stops the page says no
// server is live, and when one starts again, that one is.
func TestDashboard(t *testing.T) {
	ctx := browser(t)
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	stop := calc(t, rc, q)
	url := dashboard(t, rc)

	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil { // returns once loaded
		t.Fatalf("loading the page: %v", err)
	}
	loaded := time.Now()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(card(q)))); err != nil {
		t.Fatalf("waiting for the calculator: %v", err)
	}
	shown := time.Since(loaded)
	text, err := chromedp.Run(ctx, chromedp.Text(css(card(q))))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{q, "1 live servers", "add", "clr", "div", "float64", "at-most-once"} {
		if !strings.Contains(text, want) {
			t.Errorf("the card of %s lacks %q:\n%s", q, want, text)
		}
	}
	t.Logf("the calculator, its server and functions shown %v after loading", shown.Round(time.Millisecond))
	if shown > 2*time.Second {
		t.Errorf("the calculator was shown %v after loading, want within 2 s", shown)
	}

	// A call through the page.
	result := card(q) + " .result"
	call := func(function, args string) string {
		// Fill in the form and press Call, as a person does.
		fill := fmt.Sprintf(`(() => {
			const c = document.querySelector(%q);
			c.querySelector("select[name=function]").value = %q;
			c.querySelector("input[name=args]").value = %q;
			c.querySelector(".result").textContent = "";
			c.querySelector("button[type=submit]").click();
			return true;
		})()`, card(q), function, args)
		if err := chromedp.Do(ctx,
			chromedp.Evaluate[chromedp.Void](fill),
			chromedp.Poll[chromedp.Void](`(t => t !== "" && !t.startsWith("calling"))(document.querySelector('`+result+`').textContent)`, chromedp.WithPollingTimeout(10*time.Second)),
		); err != nil {
			t.Fatalf("calling %s(%s) through the page: %v", function, args, err)
		}
		out, err := chromedp.Run(ctx, chromedp.Text(css(result)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := call("clr", ""); got != "→ 0" {
		t.Errorf("clr() through the page shows %q, want → 0", got)
	}
	if got := call("add", "[5]"); got != "→ 5" {
		t.Errorf("add(5) through the page shows %q, want → 5", got)
	}
	if got := call("div", "0"); got != "invalid_argument: division by zero" {
		t.Errorf("div(0) through the page shows %q, want the invalid_argument failure", got)
	}
	// Servers come and go.
	stop()
	waitText(t, ctx, card(q), "no live server")
	calc(t, rc, q)
	waitText(t, ctx, card(q), "1 live servers")
}

type order struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

// TestCallForm: choosing a function shows its request's and response's
// members and puts an example request in the form; the metadata field sends
// metadata, which a service behind an auth interceptor needs.
func TestCallForm(t *testing.T) {
	ctx := browser(t)
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	auth := func(next redisrpc.CallFunc) redisrpc.CallFunc {
		return func(ctx context.Context, info *redisrpc.CallInfo, req any) (any, error) {
			if info.Meta["token"] != "s3cret" {
				return nil, redisrpc.NewError("permission_denied", "no token")
			}
			return next(ctx, info, req)
		}
	}
	mux := redisrpc.NewMux(rc, q, redisrpc.WithLogger(quiet), redisrpc.WithInterceptors(auth))
	redisrpc.Handle(mux, redisrpc.NewEndpoint[order, string]("place"), func(_ context.Context, o order) (string, error) {
		return fmt.Sprintf("%d %s", o.Qty, o.Item), nil
	})
	redisrpc.Handle(mux, add, func(_ context.Context, x float64) (float64, error) { return x, nil })
	redisrpctest.Serve(t, mux)
	url := dashboard(t, rc)
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(css(card(q)+" form.call"))); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	choose := fmt.Sprintf(`(() => {
		const s = document.querySelector(%q);
		s.value = "place";
		s.dispatchEvent(new Event("change"));
		return true;
	})()`, card(q)+" select[name=function]")
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](choose)); err != nil {
		t.Fatal(err)
	}
	members, err := chromedp.Run(ctx, chromedp.Text(css(card(q)+" .members")))
	if err != nil {
		t.Fatal(err)
	}
	example, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).value`, card(q)+" input[name=args]")))
	if err != nil {
		t.Fatal(err)
	}
	if want := "request {item: string, qty: integer}"; !strings.Contains(members, want) || !strings.Contains(members, "response string") {
		t.Errorf("the form shows %q, want %q and the response", members, want)
	}
	if want := `{"item":"","qty":0}`; example != want {
		t.Errorf("the form starts from %q, want the example %s", example, want)
	}
	result := card(q) + " .result"
	submit := func(args, meta string) string {
		js := fmt.Sprintf(`(() => {
			const c = document.querySelector(%q);
			c.querySelector("input[name=args]").value = %q;
			c.querySelector("input[name=meta]").value = %q;
			c.querySelector(".result").textContent = "";
			c.querySelector("button[type=submit]").click();
			return true;
		})()`, card(q), args, meta)
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js),
			chromedp.Poll[chromedp.Void](`(t => t !== "" && !t.startsWith("calling"))(document.querySelector('`+result+`').textContent)`, chromedp.WithPollingTimeout(10*time.Second)),
		); err != nil {
			t.Fatalf("calling place(%s) with %q: %v", args, meta, err)
		}
		out, err := chromedp.Run(ctx, chromedp.Text(css(result)))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := submit(`{"item":"tea","qty":2}`, ""); got != "permission_denied: no token" {
		t.Errorf("without metadata the page shows %q, want permission_denied: no token", got)
	}
	if got := submit(`{"item":"tea","qty":2}`, "token=s3cret, trace=1"); got != `→ "2 tea"` {
		t.Errorf("with the token the page shows %q, want → \"2 tea\"", got)
	}
	if got := submit(`{"item":"tea"}`, "token"); !strings.Contains(got, "want key=value") {
		t.Errorf("with metadata that is no key=value the page shows %q, want it refused", got)
	}
}

// waitText waits until the element sel holds want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	js := fmt.Sprintf(`(document.querySelector(%q) || {textContent: ""}).textContent.includes(%q)`, sel, want)
	if err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](js, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
		text, _ := chromedp.Run(ctx, chromedp.Text(css("body")))
		t.Fatalf("waiting for %q in %s: %v\n%s", want, sel, err, text)
	}
}

// TestScreenshot writes a picture of the dashboard, with a calculator under
// load, a failed call and a dead letter, to the file REDISRPC_SCREENSHOT
// names (docs/dashboard.png). It skips where that is not set.
func TestScreenshot(t *testing.T) {
	path := os.Getenv("REDISRPC_SCREENSHOT")
	if path == "" {
		t.Skip("set REDISRPC_SCREENSHOT to the file to write")
	}
	ctx := browser(t)
	rc := redisrpctest.Redis(t)
	calc(t, rc, "calc")
	calc(t, rc, "calc")
	c := redisrpc.NewClient(rc, "calc")
	defer c.Close()
	dead, _ := json.Marshal(map[string]any{"request": `{"function_call":{"name":"div","args":[1]},"response_queue":"calc:rpc:X","id":"42"}`,
		"why": "delivered as often as allowed (WithMaxDeliveries), and each server that took it stopped before answering", "deliveries": 3,
		"at": time.Now().Add(-time.Hour).UnixMilli(), "server": "K3P0Q9ZX2M7B4N6V"})
	rc.Do(context.Background(), rc.B().Lpush().Key("{calc}:dead").Element(string(dead)).Build())
	url := dashboard(t, rc)
	loadCtx, stopLoad := context.WithCancel(context.Background())
	defer stopLoad()
	for i := range 8 {
		go func() {
			for loadCtx.Err() == nil {
				cctx, cancel := context.WithTimeout(loadCtx, time.Second)
				redisrpc.Call(cctx, c, add, float64(i%3))
				if i == 0 {
					redisrpc.Call(cctx, c, div, 0)
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
			}
		}()
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(css(card("calc")))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Second) // a chart worth the name
	fill := `(() => {
		const c = document.querySelector('section[id="service-calc"]');
		c.querySelector("select[name=function]").value = "div";
		c.querySelector("input[name=args]").value = "[0]";
		c.querySelector("button[type=submit]").click();
		return true;
	})()`
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](fill), chromedp.Sleep(time.Second)); err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Clean(path), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// ownRedis starts a redis-server of the test's own on port (0: a free one),
// and returns the port and a function that kills it; it is killed when the
// test ends, and the test skips where there is no redis-server.
func ownRedis(t *testing.T, port int) (int, func()) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("needs redis-server on PATH to stop and restart Redis")
	}
	n, err := localredis.StartNode(t.TempDir(), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Kill)
	return n.Port, n.Kill
}

// TestDashboardRedisRestart: while Redis is down the page says so, and once
// it is back the page shows the service and its server again, by itself.
func TestDashboardRedisRestart(t *testing.T) {
	ctx := browser(t)
	port, kill := ownRedis(t, 0)
	connect := func() rueidis.Client {
		c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: []string{fmt.Sprintf("127.0.0.1:%d", port)}, DisableCache: true, ForceSingleClient: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	q := "calc-restart"
	calc(t, connect(), q)
	url := dashboard(t, connect())
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(css(card(q)))); err != nil {
		t.Fatal(err)
	}
	kill()
	waitText(t, ctx, "#status", "Redis:")
	ownRedis(t, port)
	waitText(t, ctx, "#status", "updated")
	waitText(t, ctx, card(q), "1 live servers")
}

// TestDeadLetterRequeue: the page shows each dead letter's ref and whether
// its caller was told it failed; requeuing one whose caller was not asks
// nothing, and one whose caller was asks first, naming the function and id
// it will run again, and requeues nothing unless the person accepts.
func TestDeadLetterRequeue(t *testing.T) {
	ctx := browser(t)
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	calc(t, rc, q)
	dead := keys.Dead(q)
	for _, d := range []struct {
		id       string
		answered bool
	}{{"plain-1", false}, {"charged-7", true}} {
		entry, _ := json.Marshal(map[string]any{"request": fmt.Sprintf(`{"function_call":{"name":"charge","args":[1]},"response_queue":"%s:rpc:X","id":"%s"}`, q, d.id),
			"why": "delivered too often", "deliveries": 3, "at": time.Now().UnixMilli(), "server": "S1", "answered": d.answered})
		if err := rc.Do(ctx, rc.B().Lpush().Key(dead).Element(string(entry)).Build()).Error(); err != nil {
			t.Fatal(err)
		}
	}
	deadLeft := func() string {
		all, _ := rc.Do(ctx, rc.B().Lrange().Key(dead).Start(0).Stop(-1).Build()).AsStrSlice()
		return strings.Join(all, "\n")
	}
	// The person's answers to the page's dialogs, and what the dialogs said.
	answers, asked := make(chan bool, 2), make(chan string, 2)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			asked <- ev.Message
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: <-answers})
		}
	}()
	url := dashboard(t, rc)
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	waitText(t, ctx, card(q), "Dead letters (2)")
	text, err := chromedp.Run(ctx, chromedp.Text(css(card(q))))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "told it failed") {
		t.Errorf("the card does not say which caller was told it failed:\n%s", text)
	}
	result := card(q) + " .dead-result"
	click := func(id string) {
		js := fmt.Sprintf(`(() => {
			document.querySelector(%q).textContent = "";
			const row = [...document.querySelectorAll(%q)].find(tr => tr.textContent.includes(%q));
			row.querySelector("button.requeue").click();
			return true;
		})()`, result, card(q)+" tr", id)
		if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](js)); err != nil {
			t.Fatalf("clicking requeue of %s: %v", id, err)
		}
	}

	click("plain-1")
	waitText(t, ctx, result, "requeued 1 of 1")
	select {
	case m := <-asked:
		t.Errorf("requeuing a dead letter whose caller was not answered asked %q, want nothing asked", m)
	default:
	}
	if left := deadLeft(); strings.Contains(left, "plain-1") || !strings.Contains(left, "charged-7") {
		t.Errorf("after requeuing plain-1, the dead letters are:\n%s", left)
	}

	answers <- false
	click("charged-7")
	if m := <-asked; !strings.Contains(m, "charge (id charged-7)") || !strings.Contains(m, "told it failed") {
		t.Errorf("the confirmation says %q, want the function and id it runs again, and that its caller was told it failed", m)
	}
	time.Sleep(200 * time.Millisecond) // a request the page might send anyway
	if !strings.Contains(deadLeft(), "charged-7") {
		t.Errorf("declined, yet requeued")
	}
	answers <- true
	click("charged-7")
	<-asked
	waitText(t, ctx, result, "requeued 1 of 1")
	if left := deadLeft(); left != "" {
		t.Errorf("accepted, yet left:\n%s", left)
	}
}

// TestPagePolicy: in the browser, the page works under its policy, which
// runs no inline script, and another site cannot frame it.
func TestPagePolicy(t *testing.T) {
	ctx := browser(t)
	rc := redisrpctest.Redis(t)
	q := redisrpctest.Queue(t)
	calc(t, rc, q)
	d := web.New(rc, true, quiet)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(runCtx) }()
	var scripts atomic.Int32 // requests of the page's script
	dash := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/app.js" {
			scripts.Add(1)
		}
		d.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() { dash.Close(); cancel(); <-done })
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><title>another site</title><iframe id="f" src="%s/"></iframe>`, strings.Replace(dash.URL, "127.0.0.1", "localhost", 1))
	}))
	defer other.Close()

	if err := chromedp.Do(ctx, chromedp.Navigate(other.URL)); err != nil { // returns once the frame loaded, or was refused
		t.Fatal(err)
	}
	if n := scripts.Load(); n != 0 {
		t.Errorf("another site framed the page: its script was fetched %d times, want 0", n)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(dash.URL), chromedp.WaitVisible(css(card(q)))); err != nil {
		t.Fatalf("the page under its policy: %v", err)
	}
	ran, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => {
		const s = document.createElement("script");
		s.textContent = "window.inlineRan = true";
		document.body.append(s);
		return window.inlineRan === true;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	if ran {
		t.Error("an inline script ran in the page, want it refused")
	}
}
