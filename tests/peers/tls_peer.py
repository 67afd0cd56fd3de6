#!/usr/bin/env python3
"""A TLS peer built on Python's ssl module, for comm's tests. Prints "PORT <n>" once listening on
127.0.0.1, serves one connection, and exits.

usage: tls_peer.py MODE CERT KEY
  truncate      TLS handshake, send "partial\\n", then close TCP without close_notify
  close_notify  TLS handshake, send "bye\\n", then close_notify (unwrap) and close
  starttls      plain lines: "hello" -> "plain ok"; "STARTTLS" -> "go ahead", then TLS: lines
                echoed as "tls: <line>" until "STOPTLS" -> "stopping" + close_notify exchange;
                then plain again: "after" -> "plain again", then close
  digest        TLS; requests of a line "<n>" and n bytes, each answered "<n> <sha256 hex>", until
                close_notify (answered) or the end of the connection
  late_sink     small receive buffer, no session tickets; TLS handshake, "READY", then reads nothing
                until a line on stdin; then reads to the end and prints "GOT <n> <sha256 hex>"
  late_sink_tickets
                the same with session tickets (two, sent right after the handshake)
  late_sink_talk
                late_sink_tickets, but after the line on stdin it first sends "more\n", then reads
  flood_sink    small receive and send buffers; TLS handshake, "READY", then writes 1 MiB before it reads
                anything, prints "SENT <n>" (n < 1 MiB if the client ended the connection first),
                then reads to the end and prints "GOT <n> <sha256 hex>"
  flood_late_sink
                small receive buffer; TLS handshake, "READY"; on a line on stdin writes 1 MiB and
                prints "SENT <n>"; on a second line reads to the end and prints "GOT <n> <sha256 hex>"
  late_tickets  small receive buffer; sends its handshake flight, then waits for a line on stdin
                before it reads the client's Finished, so its two session tickets reach the client
                only then; then reads to the end (close_notify or EOF) and prints
                "GOT <n> <sha256 hex>"
"""
import hashlib
import socket
import ssl
import sys


def lines(f):
    for raw in f:
        yield raw.rstrip(b"\r\n").decode()


def main():
    mode, cert, key = sys.argv[1:4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if mode in ("late_sink", "late_sink_tickets", "late_sink_talk", "late_tickets", "flood_sink", "flood_late_sink"):
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by the connection
    if mode == "flood_sink":  # so that its writes wait for the client to read, not in its buffer
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    if mode == "late_sink":
        ctx.num_tickets = 0  # nothing for the client to leave unread
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    print("PORT", listener.getsockname()[1], flush=True)
    listener.settimeout(10)
    conn, _ = listener.accept()
    conn.settimeout(10)
    if mode == "truncate":
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"partial\n")
        raw = socket.socket(fileno=tls.detach())  # the TCP socket, TLS state dropped
        raw.shutdown(socket.SHUT_RDWR)
        raw.close()
    elif mode == "close_notify":
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.sendall(b"bye\n")
        plain = tls.unwrap()  # sends close_notify, waits for the peer's
        plain.close()
    elif mode == "starttls":
        def readline(sock):
            buf = b""
            while not buf.endswith(b"\n"):
                c = sock.recv(1)
                if not c:
                    return None
                buf += c
            return buf.rstrip(b"\r\n").decode()
        assert readline(conn) == "hello"
        conn.sendall(b"plain ok\n")
        assert readline(conn) == "STARTTLS"
        conn.sendall(b"go ahead\n")
        tls = ctx.wrap_socket(conn, server_side=True)
        while True:
            line = readline(tls)
            if line is None or line == "STOPTLS":
                break
            tls.sendall(("tls: " + line + "\n").encode())
        tls.sendall(b"stopping\n")
        plain = tls.unwrap()
        assert readline(plain) == "after"
        plain.sendall(b"plain again\n")
        plain.close()
    elif mode == "digest":
        tls = ctx.wrap_socket(conn, server_side=True)
        f = tls.makefile("rb")
        while True:
            line = f.readline()
            if not line:
                break
            n = int(line)
            data = f.read(n)
            tls.sendall(("%d %s\n" % (len(data), hashlib.sha256(data).hexdigest())).encode())
            if len(data) < n:
                break
        f.close()
        tls.unwrap().close()
    elif mode in ("late_sink", "late_sink_tickets", "late_sink_talk"):
        tls = ctx.wrap_socket(conn, server_side=True)
        print("READY", flush=True)
        sys.stdin.readline()
        if mode == "late_sink_talk":
            tls.sendall(b"more\n")
        digest = hashlib.sha256()
        n = 0
        while True:
            data = tls.recv(65536)  # b"" at the end, with or without close_notify
            if not data:
                break
            n += len(data)
            digest.update(data)
        print("GOT", n, digest.hexdigest(), flush=True)
        tls.close()
    elif mode in ("flood_sink", "flood_late_sink"):
        tls = ctx.wrap_socket(conn, server_side=True)
        print("READY", flush=True)
        if mode == "flood_late_sink":
            sys.stdin.readline()
        sent = 0
        block = b"x" * 16384
        try:
            while sent < 1 << 20:
                sent += tls.send(block)
        except (OSError, ssl.SSLError):
            pass
        print("SENT", sent, flush=True)
        if mode == "flood_late_sink":
            sys.stdin.readline()
        digest = hashlib.sha256()
        n = 0
        try:
            while True:
                data = tls.recv(65536)
                if not data:
                    break
                n += len(data)
                digest.update(data)
        except (OSError, ssl.SSLError):
            pass
        print("GOT", n, digest.hexdigest(), flush=True)
        conn.close()
    elif mode == "late_tickets":
        # Memory BIOs, so that OpenSSL sees the client's Finished only when it is fed: on the
        # socket, its first handshake step could read it at once and send the tickets then.
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = ctx.wrap_bio(incoming, outgoing, server_side=True)

        def flush():
            out = outgoing.read()
            if out:
                conn.sendall(out)

        while not outgoing.pending:  # until the ClientHello is in and the flight made
            data = conn.recv(65536)
            if not data:
                raise SystemExit("no ClientHello")
            incoming.write(data)
            try:
                tls.do_handshake()
            except ssl.SSLWantReadError:
                pass
        flush()
        print("FLIGHT", flush=True)
        sys.stdin.readline()
        digest = hashlib.sha256()
        n = 0
        handshaken = False
        while True:
            try:
                if not handshaken:
                    tls.do_handshake()  # the client's Finished; the tickets go now
                    handshaken = True
                    flush()
                while True:
                    data = tls.read(65536)
                    if not data:  # close_notify
                        raise ssl.SSLZeroReturnError
                    n += len(data)
                    digest.update(data)
            except ssl.SSLWantReadError:
                flush()
                try:
                    data = conn.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                incoming.write(data)
            except ssl.SSLZeroReturnError:
                break
        print("GOT", n, digest.hexdigest(), flush=True)
        conn.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
