package outage

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestOutage: a thousand failures in a burst log one line, then a recovery
// line with the count; a failure after Every logs again.
func TestOutage(t *testing.T) {
	var buf bytes.Buffer
	o := New(slog.New(slog.NewTextHandler(&buf, nil)), "taking requests", "queue", "q")
	o.OK() // nothing to end
	for range 1000 {
		o.Fail(errors.New("connection refused"))
	}
	if !o.Failing() {
		t.Error("not failing after failures")
	}
	o.OK()
	out := buf.String()
	if n := strings.Count(out, "\n"); n != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, `level=ERROR msg="taking requests" queue=q err="connection refused"`) ||
		!strings.Contains(out, `level=INFO msg="taking requests: recovered" queue=q after=`) || !strings.Contains(out, "failures=1000") {
		t.Errorf("lines:\n%s", out)
	}
	buf.Reset()
	o.Fail(errors.New("x"))
	o.logged = time.Now().Add(-Every) // as if Every had passed
	o.Fail(errors.New("y"))
	o.Fail(errors.New("z"))
	if out := buf.String(); strings.Count(out, "\n") != 2 || !strings.Contains(out, `msg="taking requests (still failing)"`) || !strings.Contains(out, "failures=2 not_logged=0") {
		t.Errorf("a lasting outage:\n%s", out)
	}
}
