package main

// The peers that are not NATS request-reply: psrpc over Redis, and NATS
// JetStream as the at-least-once anchor.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/livekit/psrpc"
	"github.com/livekit/psrpc/pkg/bus/redisbus"
	psclient "github.com/livekit/psrpc/pkg/client"
	"github.com/livekit/psrpc/pkg/info"
	"github.com/livekit/psrpc/pkg/rand"
	psserver "github.com/livekit/psrpc/pkg/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// psrpcService is the service the psrpc server and client share: one
// method routed as a queue, each request to one server, as protoc-gen-psrpc
// registers a method of routing type QUEUE.
func psrpcService(id string) *info.ServiceDefinition {
	sd := &info.ServiceDefinition{Name: "bench", ID: id}
	sd.RegisterMethod("Echo", false, false, true, true)
	return sd
}

func goRedis(url string) (*redis.Client, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(opt), nil
}

// servePsrpc serves psrpc's Echo over its Redis bus until terminated. The
// messages are protobuf (BytesValue), decoded and encoded by psrpc.
func servePsrpc(addr string) error {
	rdb, err := goRedis(addr)
	if err != nil {
		return err
	}
	defer rdb.Close()
	srv := psserver.NewRPCServer(psrpcService(rand.NewServerID()), redisbus.New(rdb))
	err = psserver.RegisterHandler[*wrapperspb.BytesValue, *wrapperspb.BytesValue](srv, "Echo", nil,
		func(_ context.Context, req *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
			return &wrapperspb.BytesValue{Value: req.Value}, nil
		}, nil)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	waitSignal()
	srv.Close(false)
	return nil
}

// psrpcCaller returns a call of psrpc's Echo with a request of size bytes.
func psrpcCaller(addr string, size int) (func(context.Context) error, func(), error) {
	rdb, err := goRedis(addr)
	if err != nil {
		return nil, nil, err
	}
	cl, err := psclient.NewRPCClient(psrpcService(rand.NewClientID()), redisbus.New(rdb), psrpc.WithClientTimeout(10*time.Second))
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	req := &wrapperspb.BytesValue{Value: []byte(strings.Repeat("x", size))}
	call := func(ctx context.Context) error {
		_, err := psclient.RequestSingle[*wrapperspb.BytesValue](ctx, cl, "Echo", nil, req)
		return err
	}
	return call, func() { cl.Close(); rdb.Close() }, nil
}

// The JetStream system: requests are published into a work-queue stream on
// file storage, and a pull consumer of the server takes them, replies to the
// inbox the request names, then acks.
const (
	jsStream   = "BENCH"
	jsSubject  = "bench.echo"
	jsConsumer = "servers"
	jsReplyTo  = "Bench-Reply"
)

func serveJetStream(addr string) error {
	nc, err := nats.Connect(addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx := context.Background()
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: jsStream, Subjects: []string{jsSubject},
		Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	if err != nil {
		return err
	}
	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: jsConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var p payload
		if err := json.Unmarshal(m.Data(), &p); err != nil {
			m.Term()
			return
		}
		b, _ := json.Marshal(p)
		if reply := m.Headers().Get(jsReplyTo); reply != "" {
			nc.Publish(reply, b)
		}
		m.Ack()
	})
	if err != nil {
		return err
	}
	fmt.Println("ready")
	waitSignal()
	cc.Stop()
	return nil
}

// jetStreamCaller returns a call that publishes its request into the stream,
// waiting for JetStream's acknowledgement that it is stored, and then for
// the response on an inbox of the client's, as nats.go's Request does.
func jetStreamCaller(addr string, req payload) (func(context.Context) error, func(), error) {
	nc, err := nats.Connect(addr)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	prefix := nats.NewInbox()
	var mu sync.Mutex
	waiting := map[string]chan []byte{}
	_, err = nc.Subscribe(prefix+".*", func(m *nats.Msg) {
		mu.Lock()
		ch := waiting[m.Subject]
		delete(waiting, m.Subject)
		mu.Unlock()
		if ch != nil {
			ch <- m.Data
		}
	})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	var next atomic.Uint64
	call := func(ctx context.Context) error {
		b, _ := json.Marshal(req)
		inbox := prefix + "." + strconv.FormatUint(next.Add(1), 36)
		ch := make(chan []byte, 1)
		mu.Lock()
		waiting[inbox] = ch
		mu.Unlock()
		msg := &nats.Msg{Subject: jsSubject, Data: b, Header: nats.Header{jsReplyTo: []string{inbox}}}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			mu.Lock()
			delete(waiting, inbox)
			mu.Unlock()
			return err
		}
		select {
		case data := <-ch:
			var p payload
			return json.Unmarshal(data, &p)
		case <-ctx.Done():
			mu.Lock()
			delete(waiting, inbox)
			mu.Unlock()
			return ctx.Err()
		}
	}
	return call, nc.Close, nil
}

// serveNatsStream answers each request on "stream", n, with n items like
// echo's response published to its reply subject, then "end": a request
// answered by many messages to the reply inbox, each stream in a goroutine
// of its own so that streams run at once, as redisrpc's do.
func serveNatsStream(addr string) error {
	nc, err := nats.Connect(addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	_, err = nc.QueueSubscribe("stream", "servers", func(m *nats.Msg) {
		go func() {
			var n int
			if json.Unmarshal(m.Data, &n) != nil {
				return
			}
			p := payload{Data: strings.Repeat("x", 44)}
			for i := range n {
				p.ID = i
				b, _ := json.Marshal(p)
				if nc.Publish(m.Reply, b) != nil {
					return
				}
			}
			nc.Publish(m.Reply, []byte("end"))
		}()
	})
	if err != nil {
		return err
	}
	nc.Flush()
	fmt.Println("ready")
	waitSignal()
	return nil
}

// natsStreamCaller makes each caller's call of nats-stream: it reads one
// item from its inbox, decoding it, and asks for the next stream after
// the end.
func natsStreamCaller(nc *nats.Conn) func() (func(ctx context.Context) error, func()) {
	return func() (func(ctx context.Context) error, func()) {
		inbox := nats.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			return func(context.Context) error { return err }, func() {}
		}
		sub.SetPendingLimits(-1, -1)
		open := false
		body, _ := json.Marshal(streamItems)
		return func(ctx context.Context) error {
				for {
					if !open {
						if err := nc.PublishRequest("stream", inbox, body); err != nil {
							return err
						}
						open = true
					}
					m, err := sub.NextMsgWithContext(ctx)
					if err != nil {
						return err
					}
					if string(m.Data) == "end" {
						open = false
						continue
					}
					var p payload
					return json.Unmarshal(m.Data, &p)
				}
			}, func() {
				sub.Unsubscribe()
			}
	}
}
