"""A classic redisrpc client, written from PROTOCOL.md for the interop tests.

usage: classic_client.py REDIS_URL QUEUE CALLS

CALLS is a JSON list of [name, args, kwargs]. Each call is sent as classic
clients send it: a fresh response list <queue>:rpc:<8 of A-Z0-9>, empty args
and kwargs omitted, no id, then BLPOP on the response list. One JSON line is
printed per call: the response object as received, or {"timeout": true}.
"""
import json
import random
import string
import sys

import redis


def main():
    url, queue, calls = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    r = redis.Redis.from_url(url)
    for name, args, kwargs in calls:
        response_queue = queue + ":rpc:" + "".join(
            random.choice(string.ascii_uppercase + string.digits) for _ in range(8))
        function_call = {"name": name}
        if args:
            function_call["args"] = args
        if kwargs:
            function_call["kwargs"] = kwargs
        r.rpush(queue, json.dumps({"function_call": function_call, "response_queue": response_queue}))
        popped = r.blpop(response_queue, 5)
        if popped is None:
            print(json.dumps({"timeout": True}), flush=True)
            continue
        print(json.dumps(json.loads(popped[1])), flush=True)


if __name__ == "__main__":
    main()
