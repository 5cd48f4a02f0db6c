"""A classic redisrpc calculator server, written from PROTOCOL.md for the interop tests.

usage: classic_server.py REDIS_URL QUEUE

It answers as classic servers do: no id, no code, {"return_value": v} or
{"exception": "..."} with the Ruby server's extra "backtrace" member, and
EXPIRE 1 on the response list. It looks functions up by name among the
calculator's methods (it never evaluates request text) and runs until killed.
"""
import json
import sys
import traceback

import redis


class Calculator:
    def __init__(self):
        self.acc = 0.0

    def clr(self):
        self.acc = 0.0
        return self.acc

    def add(self, number):
        self.acc += number
        return self.acc

    def sub(self, number):
        self.acc -= number
        return self.acc

    def mul(self, number):
        self.acc *= number
        return self.acc

    def div(self, number):
        self.acc /= number
        return self.acc

    def val(self):
        return self.acc


def main():
    url, queue = sys.argv[1], sys.argv[2]
    r = redis.Redis.from_url(url)
    calc = Calculator()
    r.ping()
    print("ready", flush=True)
    while True:
        popped = r.blpop(queue, 1)
        if popped is None:
            continue
        request = json.loads(popped[1])
        call = request["function_call"]
        try:
            name = call["name"]
            if name.startswith("_") or not callable(getattr(calc, name, None)):
                raise AttributeError("Calculator has no function %r" % name)
            response = {"return_value": getattr(calc, name)(*call.get("args", []), **call.get("kwargs", {}))}
        except Exception as e:
            response = {"exception": repr(e), "backtrace": traceback.format_exc().splitlines()}
        r.rpush(request["response_queue"], json.dumps(response))
        r.expire(request["response_queue"], 1)


if __name__ == "__main__":
    main()
