package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redisrpc/redisrpc"
)

// The shop's two services: orders, whose PlaceOrder reserves stock from
// inventory.
var (
	PlaceOrder   = redisrpc.NewEndpoint[Order, Placed]("place_order")
	ReserveStock = redisrpc.NewEndpoint[Reservation, Reserved]("reserve")
)

// CodeOutOfStock is the failure of an order for more than is left; its
// details are a Shortage.
const CodeOutOfStock redisrpc.Code = "out_of_stock"

type (
	// Order is what a customer asks for.
	Order struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	// Placed is an order taken.
	Placed struct {
		OrderID string `json:"order_id"`
		Left    int    `json:"left"` // of the item, after this order
	}
	// Reservation takes stock for an order.
	Reservation struct {
		Item     string `json:"item"`
		Quantity int    `json:"quantity"`
	}
	// Reserved is a reservation made.
	Reserved struct {
		Left int `json:"left"`
	}
	// Shortage details an out_of_stock failure.
	Shortage struct {
		Item   string `json:"item"`
		Wanted int    `json:"wanted"`
		Left   int    `json:"left"`
	}
)

// inventory holds the stock. Each reservation takes delay, as a database
// would, and gives up when its caller's deadline passes.
type inventory struct {
	mu    sync.Mutex
	stock map[string]int
	delay atomic.Int64 // nanoseconds
}

func (inv *inventory) reserve(ctx context.Context, r Reservation) (Reserved, error) {
	select {
	case <-time.After(time.Duration(inv.delay.Load())):
	case <-ctx.Done():
		return Reserved{}, ctx.Err()
	}
	inv.mu.Lock()
	defer inv.mu.Unlock()
	left := inv.stock[r.Item]
	if r.Quantity > left {
		return Reserved{}, redisrpc.NewError(CodeOutOfStock, fmt.Sprintf("%s: %d wanted, %d left", r.Item, r.Quantity, left)).
			WithDetails(Shortage{Item: r.Item, Wanted: r.Quantity, Left: left})
	}
	inv.stock[r.Item] = left - r.Quantity
	return Reserved{Left: left - r.Quantity}, nil
}

// orders takes orders, reserving their stock from the inventory service.
type orders struct {
	inventory *redisrpc.Client
	next      atomic.Int64
	log       *slog.Logger
}

func (o *orders) place(ctx context.Context, order Order) (Placed, error) {
	// The caller's deadline and trace go on to the inventory with ctx.
	res, err := redisrpc.Call(ctx, o.inventory, ReserveStock, Reservation(order))
	if err != nil {
		return Placed{}, err // an *Error (out_of_stock and its details) reaches our caller as it is
	}
	id := fmt.Sprintf("o-%d", o.next.Add(1))
	o.log.InfoContext(ctx, "order placed", "order", id, "request", redisrpc.CallInfoFromContext(ctx).ID)
	return Placed{OrderID: id, Left: res.Left}, nil
}
