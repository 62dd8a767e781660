"""The third-party side of the interop test: Python's confluent-kafka.

  interop.py produce BROKERS TOPIC      writes one record, prints what it wrote as JSON
  interop.py consume BROKERS TOPIC N    reads N records from the start, prints each as JSON
"""
import json
import sys

from confluent_kafka import Consumer, Producer


def produce(brokers, topic):
    producer = Producer({"bootstrap.servers": brokers})
    record = {
        "key": "py-key",
        "value": "from python \u00e9",
        "headers": {"tenant": "acme", "trace": "a b c", "tw-content-type": "text/plain"},
        "timestamp": 1_700_000_000_123,
    }
    errors = []
    producer.produce(
        topic,
        key=record["key"].encode(),
        value=record["value"].encode(),
        headers=list(record["headers"].items()),
        timestamp=record["timestamp"],
        on_delivery=lambda err, msg: errors.append(err) if err else None,
    )
    producer.flush(30)
    if errors:
        sys.exit(f"produce failed: {errors}")
    print(json.dumps(record))


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
        produce(brokers, topic)
    elif command == "consume":
        consume(brokers, topic, int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
