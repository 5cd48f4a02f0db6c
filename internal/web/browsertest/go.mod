module github.com/redisrpc/redisrpc/internal/web/browsertest

go 1.26.0

replace github.com/redisrpc/redisrpc => ../../..

require (
	github.com/chromedp/chromedp v0.23.0
	github.com/redis/rueidis v1.0.79
	github.com/redisrpc/redisrpc v0.0.0
)

require (
	github.com/alicebob/miniredis/v2 v2.40.0 // indirect
	github.com/chromedp/cdproto v0.159.0 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/yuin/gopher-lua v1.1.1 // indirect
	golang.org/x/sys v0.47.0 // indirect
)
