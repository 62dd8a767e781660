// The Java side of the Kafka interop tests: Apache Kafka's own client (kafka-clients),
// with its default settings, as a Java service would use it.
//
//   KafkaInterop produce BROKERS TOPIC N   writes N keyed records with headers and a set
//                                          timestamp; prints each as a JSON line, with the
//                                          partition the default partitioner chose
//   KafkaInterop consume BROKERS TOPIC N   reads N records from the start of TOPIC and
//                                          prints each as a JSON line
//
// The test kit compiles this file against the broker's jars (testkit/src/clients.rs).

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import java.util.UUID;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class KafkaInterop {
    /**
     * How long before now the first produced record is stamped; record i gets one more
     * millisecond. Far enough back to differ from any time the broker would stamp, and well
     * within the topic's retention: records older than that (a fixed 2023 stamp once) are
     * deleted at the broker's next retention check, which now and then fell between the
     * write and the read.
     */
    static final long STAMP_BEFORE_NOW_MS = 60_000;

    public static void main(String[] args) throws Exception {
        if (args.length != 4) {
            System.err.println("usage: KafkaInterop produce|consume BROKERS TOPIC N");
            System.exit(2);
        }
        String brokers = args[1];
        String topic = args[2];
        int n = Integer.parseInt(args[3]);
        switch (args[0]) {
            case "produce" -> produce(brokers, topic, n);
            case "consume" -> consume(brokers, topic, n);
            default -> {
                System.err.println("unknown command " + args[0]);
                System.exit(2);
            }
        }
    }

    static void produce(String brokers, String topic, int n) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        props.put("key.serializer", ByteArraySerializer.class.getName());
        props.put("value.serializer", ByteArraySerializer.class.getName());
        long base = System.currentTimeMillis() - STAMP_BEFORE_NOW_MS;
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
            for (int i = 0; i < n; i++) {
                String key = "key-" + i;
                String value = "from java " + i + " \u00e9";
                ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(
                    topic, null, base + i, bytes(key), bytes(value));
                record.headers().add("tenant", bytes("acme"));
                record.headers().add("trace", bytes("a b c"));
                record.headers().add("tw-content-type", bytes("text/plain"));
                RecordMetadata meta = producer.send(record).get();
                System.out.println("{\"key\":" + quote(key) + ",\"value\":" + quote(value)
                    + ",\"timestamp\":" + meta.timestamp() + ",\"partition\":" + meta.partition() + "}");
            }
            producer.flush();
        }
    }

    static void consume(String brokers, String topic, int n) {
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        props.put("group.id", "java-interop-" + UUID.randomUUID());
        props.put("auto.offset.reset", "earliest");
        props.put("key.deserializer", ByteArrayDeserializer.class.getName());
        props.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(List.of(topic));
            long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
            int got = 0;
            while (got < n) {
                if (System.nanoTime() > deadline) {
                    System.err.println("only " + got + " of " + n + " records arrived within 60 s");
                    System.exit(1);
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    StringBuilder headers = new StringBuilder("{");
                    for (Header h : r.headers()) {
                        if (headers.length() > 1) {
                            headers.append(',');
                        }
                        headers.append(quote(h.key())).append(':').append(quote(text(h.value())));
                    }
                    headers.append('}');
                    System.out.println("{\"key\":" + (r.key() == null ? "null" : quote(text(r.key())))
                        + ",\"value\":" + quote(hex(r.value())) + ",\"headers\":" + headers
                        + ",\"timestamp\":" + r.timestamp() + ",\"partition\":" + r.partition() + "}");
                    got++;
                }
            }
        }
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String text(byte[] b) {
        return new String(b, StandardCharsets.UTF_8);
    }

    static String hex(byte[] b) {
        StringBuilder out = new StringBuilder();
        for (byte x : b) {
            out.append(String.format("%02x", x));
        }
        return out.toString();
    }

    /** A JSON string literal. */
    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
