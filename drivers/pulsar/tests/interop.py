"""The third-party side of the interop test: the official Python client, pulsar-client.

  interop.py produce URL TOPIC      writes one message, prints what it wrote as JSON
  interop.py consume URL TOPIC N    reads N messages from the start, prints each as JSON
"""
import json
import sys

import pulsar


def produce(url, topic):
    client = pulsar.Client(url)
    producer = client.create_producer(topic, batching_enabled=False)
    message = {
        "key": "py-key",
        "value": "from python \u00e9",
        "properties": {"tenant": "acme", "trace": "a b c", "tw-content-type": "text/plain"},
        "event_time": 1_700_000_000_123,
    }
    producer.send(
        message["value"].encode(),
        properties=message["properties"],
        partition_key=message["key"],
        event_timestamp=message["event_time"],
    )
    client.close()
    print(json.dumps(message))


def consume(url, topic, n):
    client = pulsar.Client(url)
    consumer = client.subscribe(
        topic, "python-interop", initial_position=pulsar.InitialPosition.Earliest
    )
    for _ in range(n):
        try:
            msg = consumer.receive(timeout_millis=60_000)
        except pulsar.Timeout:
            sys.exit("no message arrived within 60 s")
        consumer.acknowledge(msg)
        print(
            json.dumps(
                {
                    "key": msg.partition_key(),
                    "ordering_key": msg.ordering_key(),
                    "value": msg.data().hex(),
                    "properties": msg.properties(),
                    "event_time": msg.event_timestamp(),
                }
            ),
            flush=True,
        )
    client.close()


if __name__ == "__main__":
    command, url, topic = sys.argv[1:4]
    if command == "produce":
        produce(url, topic)
    elif command == "consume":
        consume(url, topic, int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
