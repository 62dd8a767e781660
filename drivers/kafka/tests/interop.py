"""The third-party side of the interop test: Python's confluent-kafka.

  interop.py produce BROKERS TOPIC [N]  writes N records (default 1) with keys py-key-0..,
                                        prints each as JSON with the partition the
                                        default partitioner (librdkafka's) chose
  interop.py consume BROKERS TOPIC N    reads N records from the start, prints each as JSON
"""
import json
import sys
import time

from confluent_kafka import Consumer, Producer


# How long before now the first produced record is stamped. Far enough back to differ
# from any time the broker would stamp, and well within the topic's retention: records
# older than that (a fixed 2023 stamp once) are deleted at the broker's next retention
# check, which now and then fell between the write and the read.
STAMP_BEFORE_NOW_MS = 60_000


def produce(brokers, topic, n):
    producer = Producer({"bootstrap.servers": brokers})
    base = int(time.time() * 1000) - STAMP_BEFORE_NOW_MS
    for i in range(n):
        record = {
            "key": f"py-key-{i}",
            "value": f"from python {i} \u00e9",
            "headers": {"tenant": "acme", "trace": "a b c", "tw-content-type": "text/plain"},
            "timestamp": base + i,
        }
        outcome = []
        producer.produce(
            topic,
            key=record["key"].encode(),
            value=record["value"].encode(),
            headers=list(record["headers"].items()),
            timestamp=record["timestamp"],
            on_delivery=lambda err, msg: outcome.append((err, msg)),
        )
        producer.flush(30)
        if not outcome or outcome[0][0]:
            sys.exit(f"produce failed: {outcome}")
        record["partition"] = outcome[0][1].partition()
        print(json.dumps(record), flush=True)


def consume(brokers, topic, n):
    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": "python-interop", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe([topic])
    got = 0
    idle = 0
    while got < n:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            if idle > 60:
                sys.exit(f"only {got} of {n} records arrived within 60 s")
            continue
        if msg.error():
            sys.exit(f"consume failed: {msg.error()}")
        print(
            json.dumps(
                {
                    "key": msg.key().decode() if msg.key() is not None else None,
                    "value": msg.value().hex(),
                    "headers": {k: v.decode() for k, v in (msg.headers() or [])},
                    "timestamp": msg.timestamp()[1],
                    "partition": msg.partition(),
                }
            ),
            flush=True,
        )
        got += 1
    consumer.close()


if __name__ == "__main__":
    command, brokers, topic = sys.argv[1:4]
    if command == "produce":
        produce(brokers, topic, int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    elif command == "consume":
        consume(brokers, topic, int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
