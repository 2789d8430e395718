#!/usr/bin/env python3
"""Writes a realistic Postfix mail log for benchmarking `mxctl log-report` against pflogsumm.

Mix per SMTP session (weights roughly like an MX facing the Internet): accepted messages with
1-3 recipients delivered to the drop folder (pipe/virtual) or relayed (smtp), greylisting
deferrals later delivered, bounces with a non-delivery notification, Postfix RCPT rejects
(550 5.1.1 / 554 5.7.1 relay), milter-reject RCPT lines (550 5.1.1 / 450 4.2.1 / 451 4.3.0 /
451 4.7.1), dictionary-attack sessions, and noise (TLS, lost connections, anvil statistics).
Queue IDs are unique hex IDs (many of them); the line format is traditional syslog.
Deterministic (fixed seed). Usage: generate.py --size-mb 1024 --out /tmp/maillog"""
import argparse, random

ap = argparse.ArgumentParser()
ap.add_argument("--size-mb", type=int, default=1024)
ap.add_argument("--out", required=True)
args = ap.parse_args()
rnd = random.Random(42)
limit = args.size_mb * 1024 * 1024

months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
domains = ["example.test", "sales.example.test", "shop.test", "corp.test", "paused.test"]
users = ["info", "sales", "support", "billing", "jobs", "office", "hr", "orders"]
senders = [f"user{i}@sender{i % 97}.test" for i in range(500)]
clients = [(f"mail{i}.sender{i % 97}.test", f"198.51.{i % 256}.{(i * 7) % 256}") for i in range(300)]
spammers = [("unknown", f"203.0.113.{i}") for i in range(1, 200)]

class clock:
    t = 0  # seconds since Jan 1, 00:00

def stamp():
    t = clock.t
    day = t // 86400
    month = min(day // 30, 11)
    d = day % 30 + 1
    s = t % 86400
    return f"{months[month]} {d:2d} {s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"

qcounter = [0x10000000]
def qid():
    qcounter[0] += rnd.randint(1, 5000)
    return f"{qcounter[0] % 0xFFFFFFFFFF:X}"

def line(tag, pid, msg):
    return f"{stamp()} mx1 postfix/{tag}[{pid}]: {msg}\n"

out = open(args.out, "w")
written = 0
pending = []  # (time, text) of deferred retries

def emit(s):
    global written
    out.write(s)
    written += len(s)

while written < limit:
    clock.t += rnd.randint(0, 2)
    pid = rnd.randint(1000, 60000)
    r = rnd.random()
    if r < 0.55:
        host, ip = rnd.choice(clients)
        q = qid()
        sender = rnd.choice(senders)
        rcpts = [f"{rnd.choice(users)}@{rnd.choice(domains[:4])}" for _ in range(rnd.choice([1, 1, 1, 2, 3]))]
        b = [line("smtpd", pid, f"connect from {host}[{ip}]"),
             line("smtpd", pid, f"Anonymous TLS connection established from {host}[{ip}]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"),
             line("smtpd", pid, f"{q}: client={host}[{ip}]"),
             line("cleanup", pid + 1, f"{q}: message-id=<{q.lower()}.{rnd.randint(0, 10**9)}@{sender.split('@')[1]}>"),
             line("qmgr", 900, f"{q}: from=<{sender}>, size={rnd.randint(900, 200000)}, nrcpt={len(rcpts)} (queue active)"),
             line("smtpd", pid, f"disconnect from {host}[{ip}] ehlo=2 starttls=1 mail=1 rcpt={len(rcpts)} data=1 quit=1 commands={6 + len(rcpts)}")]
        removed = True
        for rc in rcpts:
            k = rnd.random()
            d = rnd.choice(["0.12", "0.3", "1.1", "0.05", "2.4", "0.61"])
            if k < 0.85:
                b.append(line("pipe", pid + 2, f"{q}: to=<{rc}>, relay=mxdrop, delay={d}, delays=0.02/0.01/0/{d}, dsn=2.0.0, status=sent (delivered via mxdrop service)"))
            elif k < 0.95:
                b.append(line("smtp", pid + 3, f"{q}: to=<{rc}>, relay=mx.partner.test[192.0.2.25]:25, delay=4.2, delays=0.1/0/2/2.1, dsn=4.7.1, status=deferred (host mx.partner.test[192.0.2.25] said: 451 4.7.1 Greylisted, see https://grey.example/ (in reply to RCPT TO command))"))
                pending.append((clock.t + rnd.randint(300, 900), [
                    "qmgr", 900, f"{q}: from=<{sender}>, size=5000, nrcpt=1 (queue active)"], [
                    "smtp", pid + 3, f"{q}: to=<{rc}>, relay=mx.partner.test[192.0.2.25]:25, delay=612, delays=610/0/1/1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Tqv5C1lXbz9sLp)"], [
                    "qmgr", 900, f"{q}: removed"]))
                removed = False
            else:
                n = qid()
                b.append(line("smtp", pid + 3, f"{q}: to=<{rc}>, relay=mx.partner.test[192.0.2.25]:25, delay=1.3, delays=0.1/0/0.6/0.6, dsn=5.1.1, status=bounced (host mx.partner.test[192.0.2.25] said: 550 5.1.1 <{rc}>: Recipient address rejected: User unknown (in reply to RCPT TO command))"))
                b.append(line("cleanup", pid + 1, f"{n}: message-id=<{n}@mx1.example.test>"))
                b.append(line("bounce", pid + 4, f"{q}: sender non-delivery notification: {n}"))
                b.append(line("qmgr", 900, f"{n}: from=<>, size=3000, nrcpt=1 (queue active)"))
                b.append(line("smtp", pid + 3, f"{n}: to=<{sender}>, relay=mx.{sender.split('@')[1]}[192.0.2.30]:25, delay=0.4, delays=0/0/0.2/0.2, dsn=2.0.0, status=sent (250 2.0.0 Ok)"))
                b.append(line("qmgr", 900, f"{n}: removed"))
        if removed:
            b.append(line("qmgr", 900, f"{q}: removed"))
        emit("".join(b))
    elif r < 0.80:
        host, ip = rnd.choice(spammers)
        b = [line("smtpd", pid, f"connect from {host}[{ip}]")]
        for _ in range(rnd.randint(1, 6)):
            rc = f"{rnd.choice(['admin', 'test', 'webmaster', 'a' + str(rnd.randint(0, 99999))])}@{rnd.choice(domains)}"
            k = rnd.random()
            if k < 0.5:
                reply = f"550 5.1.1 <{rc}>: Recipient address rejected: User unknown"
                kind = "milter-reject"
            elif k < 0.6:
                reply = f"450 4.2.1 <{rc}>: Recipient address rejected: Mailbox temporarily disabled"
                kind = "milter-reject"
            elif k < 0.63:
                reply = f"451 4.3.0 <{rc}>: Recipient address rejected: Temporary lookup failure"
                kind = "milter-reject"
            elif k < 0.65:
                reply = "451 4.7.1 Service unavailable - try again later"
                kind = "milter-reject"
            elif k < 0.9:
                reply = f"550 5.1.1 <{rc}>: Recipient address rejected: User unknown in virtual mailbox table"
                kind = "reject"
            else:
                rc = f"victim{rnd.randint(0, 999)}@elsewhere{rnd.randint(0, 99)}.test"
                reply = f"554 5.7.1 <{rc}>: Relay access denied"
                kind = "reject"
            b.append(line("smtpd", pid, f"NOQUEUE: {kind}: RCPT from {host}[{ip}]: {reply}; from=<{rnd.choice(senders)}> to=<{rc}> proto=ESMTP helo=<{ip}>"))
        b.append(line("smtpd", pid, f"disconnect from {host}[{ip}] ehlo=1 mail=1 rcpt=0/3 quit=1 commands=3/6"))
        emit("".join(b))
    elif r < 0.92:
        host, ip = rnd.choice(spammers)
        emit(line("smtpd", pid, f"connect from {host}[{ip}]") +
             line("smtpd", pid, f"lost connection after EHLO from {host}[{ip}]") +
             line("smtpd", pid, f"disconnect from {host}[{ip}] ehlo=1 commands=1"))
    elif r < 0.97:
        q = qid()
        emit(line("pickup", 800, f"{q}: uid=0 from=<root>") +
             line("cleanup", pid + 1, f"{q}: message-id=<{q}@mx1.example.test>") +
             line("qmgr", 900, f"{q}: from=<root@mx1.example.test>, size=700, nrcpt=1 (queue active)") +
             line("local", pid + 5, f"{q}: to=<root@mx1.example.test>, orig_to=<root>, relay=local, delay=0.02, delays=0.01/0/0/0.01, dsn=2.0.0, status=sent (delivered to mailbox)") +
             line("qmgr", 900, f"{q}: removed"))
    else:
        emit(line("anvil", 700, f"statistics: max connection rate 3/60s for (smtp:{rnd.choice(spammers)[1]}) at {stamp()}"))
    while pending and pending[0][0] <= clock.t:
        _, *ls = pending.pop(0)
        emit("".join(line(*x) for x in ls))
for _, *ls in pending:
    emit("".join(line(*x) for x in ls))
out.close()
print(f"generate.py: wrote {written / 1048576:.0f} MiB to {args.out}")
