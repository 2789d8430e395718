// http_sink: a minimal HTTP/1.1 keep-alive receiver for the webhook benchmark. One thread per
// connection; parses the request line and headers, reads Content-Length bytes, verifies the
// X-Mx-Signature (HMAC-SHA256 over "<X-Mx-Timestamp>.<body>") when a secret is given, answers
// 200 "ok" (401 on a bad signature). Prints the request count on SIGTERM. Benchmark tool only:
// no chunked bodies, no pipelining guarantees beyond what the importer sends.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include <openssl/hmac.h>

namespace {

std::atomic<unsigned long> g_requests{0}, g_bad{0};
std::string g_secret;

std::string header(const std::string& head, const char* name) {
    std::size_t n = std::strlen(name);
    for (std::size_t pos = head.find("\r\n"); pos != std::string::npos;
         pos = head.find("\r\n", pos + 2)) {
        if (strncasecmp(head.c_str() + pos + 2, name, n) == 0 && head[pos + 2 + n] == ':') {
            std::size_t v = pos + 3 + n;
            while (v < head.size() && head[v] == ' ') ++v;
            return head.substr(v, head.find("\r\n", v) - v);
        }
    }
    return {};
}

std::string hmac_hex(const std::string& ts, const std::string& body) {
    std::string data = ts + "." + body;
    unsigned char md[64];
    unsigned len = 0;
    HMAC(EVP_sha256(), g_secret.data(), static_cast<int>(g_secret.size()),
         reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &len);
    static const char* d = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) out += d[md[i] >> 4], out += d[md[i] & 15];
    return out;
}

void serve(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    std::string buf;
    char tmp[65536];
    for (;;) {
        std::size_t end;
        while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
            ssize_t r = read(fd, tmp, sizeof tmp);
            if (r <= 0) return (void)close(fd);
            buf.append(tmp, static_cast<std::size_t>(r));
        }
        std::string head = buf.substr(0, end);
        std::size_t len = std::strtoul(header(head, "Content-Length").c_str(), nullptr, 10);
        while (buf.size() < end + 4 + len) {
            ssize_t r = read(fd, tmp, sizeof tmp);
            if (r <= 0) return (void)close(fd);
            buf.append(tmp, static_cast<std::size_t>(r));
        }
        std::string body = buf.substr(end + 4, len);
        buf.erase(0, end + 4 + len);
        bool ok =
            g_secret.empty() || header(head, "X-Mx-Signature") ==
                                    "sha256=" + hmac_hex(header(head, "X-Mx-Timestamp"), body);
        ++g_requests;
        if (!ok) ++g_bad;
        const char* resp = ok ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                              : "HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nbad";
        if (write(fd, resp, std::strlen(resp)) < 0) return (void)close(fd);
    }
}

void on_term(int) {
    std::fprintf(stderr, "requests %lu bad-signatures %lu\n", g_requests.load(), g_bad.load());
    _exit(0);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return std::fprintf(stderr, "usage: http_sink PORT [SECRET]\n"), 2;
    if (argc > 2) g_secret = argv[2];
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[1])));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 128) != 0)
        return std::perror("bind/listen"), 1;
    std::printf("listening on 127.0.0.1:%s\n", argv[1]);
    std::fflush(stdout);
    for (;;) {
        int c = accept4(s, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) std::thread(serve, c).detach();
    }
}
