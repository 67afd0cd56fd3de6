# A TLS echo server on 127.0.0.1 with Python's ssl module (an independent peer for the async
# client). Usage: tls_echo_server.py CERT KEY. Prints "PORT <n>" once listening, serves clients
# one at a time until killed.
import socket
import ssl
import sys

ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 0))
listener.listen(16)
print("PORT %d" % listener.getsockname()[1], flush=True)
while True:
    raw, _ = listener.accept()
    try:
        with ctx.wrap_socket(raw, server_side=True) as conn:
            print("VERSION %s" % conn.version(), flush=True)
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
    except (ssl.SSLError, OSError) as e:
        print("ERROR %s" % e, flush=True)
