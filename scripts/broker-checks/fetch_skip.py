#!/usr/bin/env python3
# Does a consumer tailing a partition (read_uncommitted, fetch.wait.max.ms 50) skip records
# that a later read from the start returns, while transactional producers commit into it?
# Seen with the test broker (tansu 0.6): docs/KAFKA.md, "A fetch at the tail can skip records".
# Needs confluent-kafka (pip install confluent-kafka) and the broker of
# scripts/install-kafka-broker.sh. Usage: fetch_skip.py [seconds, default 60]
import subprocess, socket, time, sys, threading, random
from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
import os
tansu = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../target/kafka-broker-venv/tansu")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
url = f"tcp://127.0.0.1:{port}"
broker = subprocess.Popen([tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
    "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.5)
bs = f"127.0.0.1:{port}"
admin = AdminClient({"bootstrap.servers": bs})
for f in admin.create_topics([NewTopic("in", 4, 1), NewTopic("rep", 4, 1)]).values(): f.result()
duration = float(sys.argv[1]) if len(sys.argv) > 1 else 60
end = time.time() + duration
def writer(i):
    rng = random.Random(i)
    c = Consumer({"bootstrap.servers": bs, "group.id": "g"})
    p = Producer({"bootstrap.servers": bs, "transactional.id": f"t{i}", "linger.ms": 5})
    p.init_transactions()
    n = 0
    while time.time() < end:
        n += 1
        p.begin_transaction()
        for k in range(rng.choice([0, 1, 5, 20, 200])):
            p.produce("rep", b"x" * 8, key=f"w{rng.randrange(300)}".encode())
        for part in range(4):
            p.produce("rep", b"", partition=part, headers={"end": "1"})
        p.send_offsets_to_transaction([TopicPartition("in", i, n)], c.consumer_group_metadata())
        p.commit_transaction()
        time.sleep(rng.random() * 0.3)
tails = {}
def tail(name, part):
    c = Consumer({"bootstrap.servers": bs, "group.id": "rep.reader", "enable.auto.commit": False,
                  "fetch.wait.max.ms": 50, "isolation.level": "read_uncommitted",
                  "auto.offset.reset": "earliest", "enable.partition.eof": False})
    c.assign([TopicPartition("rep", part, 0)])
    got = tails.setdefault((name, part), set())
    while time.time() < end + 5:
        m = c.poll(0.05)
        if m is None or m.error(): continue
        got.add(m.offset())
threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
threads += [threading.Thread(target=tail, args=(n, p)) for n in ("a", "b") for p in range(4)]
for t in threads: t.start()
for t in threads: t.join()
c = Consumer({"bootstrap.servers": bs, "group.id": "reader", "enable.partition.eof": True,
              "auto.offset.reset": "earliest", "isolation.level": "read_uncommitted"})
c.assign([TopicPartition("rep", p, 0) for p in range(4)])
eof = set(); allof = {p: set() for p in range(4)}
while len(eof) < 4:
    m = c.poll(10)
    if m is None: break
    if m.error():
        if m.error().code() == -191: eof.add(m.partition())
        continue
    allof[m.partition()].add(m.offset())
for (name, part), got in sorted(tails.items()):
    missing = sorted(allof[part] - got)
    print(f"tail {name} partition {part}: {len(got)} of {len(allof[part])}; missing {len(missing)} {missing[:20]}", flush=True)
broker.kill()
