// Command prometheus serves a redisrpc service whose calls OpenTelemetry
// measures (redisrpcotel), and exports the measures for Prometheus to scrape
// at /metrics, beside the service's probes at /livez and /readyz
// (Mux.HealthHandler). A client in the same program calls the service now
// and then, so that a scrape shows both sides.
//
//	cd examples/prometheus && go run .   # on an embedded Redis, or REDIS_URL
//	curl -s 127.0.0.1:9464/metrics | grep rpc_
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/rueidis"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/redisrpc/redisrpc"
	"github.com/redisrpc/redisrpc/internal/localredis"
	"github.com/redisrpc/redisrpc/redisrpcotel"
)

// Quote prices an item.
var Quote = redisrpc.NewEndpoint[QuoteRequest, float64]("quote")

// QuoteRequest asks the price of Qty of Item.
type QuoteRequest struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:9464", "where to serve /metrics, /livez and /readyz")
	every := flag.Duration("every", time.Second, "how often the program's own client calls quote; 0 for never")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	redis, rc, err := localredis.StartWithClient(localredis.NoBinary)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prometheus:", err)
		os.Exit(1)
	}
	defer redis.Close()
	defer rc.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "prometheus:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "metrics at http://%s/metrics, probes at /livez and /readyz (Redis: %s)\n", ln.Addr(), redis.Kind)
	if err := run(ctx, rc, ln, *every, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "prometheus:", err)
		os.Exit(1)
	}
}

// run serves quote on the queue "prices", measured, and the metrics and
// probes on ln, until ctx ends; with every > 0 it calls quote that often.
func run(ctx context.Context, rc rueidis.Client, ln net.Listener, every time.Duration, log io.Writer) error {
	registry := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(registry))
	if err != nil {
		return err
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	defer meters.Shutdown(context.Background())
	measured, err := redisrpcotel.NewInterceptor(redisrpcotel.WithMeterProvider(meters))
	if err != nil {
		return err
	}

	mux := redisrpc.NewMux(rc, "prices", redisrpc.WithInterceptors(measured))
	redisrpc.Handle(mux, Quote, func(_ context.Context, q QuoteRequest) (float64, error) {
		if q.Qty <= 0 {
			return 0, redisrpc.NewError(redisrpc.CodeInvalidArgument, "qty must be at least 1")
		}
		return 2.5 * float64(q.Qty), nil
	})
	routes := http.NewServeMux()
	routes.Handle("/metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	routes.Handle("/livez", mux.HealthHandler())
	routes.Handle("/readyz", mux.HealthHandler())
	web := &http.Server{Handler: routes, ReadHeaderTimeout: 5 * time.Second}

	served := make(chan error, 2)
	go func() { served <- mux.Serve(context.WithoutCancel(ctx)) }() // ended by Shutdown, which drains
	go func() { served <- web.Serve(ln) }()
	client := redisrpc.NewClient(rc, "prices", redisrpc.WithInterceptors(measured))
	defer client.Close()
	var tick <-chan time.Time
	if every > 0 {
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for n := 0; ; n++ {
		select {
		case err := <-served: // one of them failed: stop the other
			web.Close()
			mux.Shutdown(context.Background())
			return err
		case <-tick:
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err := redisrpc.Call(cctx, client, Quote, QuoteRequest{Item: "tea", Qty: n % 4}) // every fourth fails
			cancel()
			if err != nil && redisrpc.CodeOf(err) != redisrpc.CodeInvalidArgument {
				fmt.Fprintln(log, "calling quote:", err)
			}
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := errors.Join(mux.Shutdown(sctx), web.Shutdown(sctx))
			for range 2 {
				if e := <-served; !errors.Is(e, redisrpc.ErrServerClosed) && !errors.Is(e, http.ErrServerClosed) && e != nil {
					err = errors.Join(err, e)
				}
			}
			return err
		}
	}
}
