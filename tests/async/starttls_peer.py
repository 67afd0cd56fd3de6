# A STARTTLS client with Python's ssl module over memory BIOs, so that it decides exactly which
# bytes share one send(): "STARTTLS\r\n" and the ClientHello go out together, and later an
# application record, the close_notify and plain bytes after it go out together. The server
# must split them correctly: hand the ClientHello to TLS, and after detaching hand the plain
# bytes back. Usage: starttls_peer.py PORT CAFILE. Prints "PLAIN <text>" with the plain reply
# the server sends after TLS, or "ERROR <what>".
import socket
import ssl
import sys

port, cafile = int(sys.argv[1]), sys.argv[2]
sock = socket.create_connection(("127.0.0.1", port), timeout=10)
ctx = ssl.create_default_context(cafile=cafile)
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")


def pump(step, first_prefix=b""):
    """Runs step() until it stops asking for more input; returns its result."""
    prefix = first_prefix
    while True:
        try:
            result = step()
            out = outgoing.read()
            if out or prefix:
                sock.sendall(prefix + out)
            return result
        except ssl.SSLWantReadError:
            sock.sendall(prefix + outgoing.read())
            prefix = b""
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("server closed during TLS")
            incoming.write(data)


try:
    pump(tls.do_handshake, b"STARTTLS\r\n")
    tls.write(b"secret")
    # unwrap() sends close_notify and wants the server's: send the record, the alert and the
    # plain bytes in one go first.
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass
    sock.sendall(outgoing.read() + b"after-tls")
    pump(tls.unwrap)
    plain = incoming.read()  # bytes after the server's close_notify
    while True:
        data = sock.recv(65536)
        if not data:
            break
        plain += data
    print("PLAIN " + plain.decode(), flush=True)
except Exception as e:  # noqa: BLE001 - reported to the test
    print("ERROR %r" % e, flush=True)
