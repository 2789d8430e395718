// target_webhook: "webhook:URL[#options]" — one HTTP(S) POST per (message, recipient) through
// libcurl (shared/util/curl.hpp), the raw message (message/rfc822) or a JSON document as body,
// signed with the mailbox's target secret, identified by the idempotency key.
//
// The easy handle is kept for the target's lifetime so connections are reused (keep-alive).
// TLS peer and host verification stay on; redirects are not followed (a receiver that moved
// is a configuration matter: 3xx is temporary so nothing bounces while it is fixed).
// Credentials (auth=bearer|basic, user:password@ in the URL) never travel over plain http://
// except to a loopback address (127.0.0.0/8, ::1, localhost), and such a loopback URL is
// fetched without any proxy from the environment: parse_webhook_spec() refuses the spec, so
// the importer defers (4.3.5, "target: ...") and mxctl refuses to store it.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <ctime>
#include <mutex>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <spdlog/spdlog.h>

#include "global/logging.hpp"
#include "global/model.hpp"
#include "global/secrets.hpp"
#include "message_parse.hpp"
#include "target_http.hpp"
#include "util/curl.hpp"
#include "util/fs.hpp"

namespace mx::importer {
namespace {

std::string hex(const unsigned char* p, std::size_t n) {
    static const char* d = "0123456789abcdef";
    std::string out;
    out.reserve(n * 2);
    for (std::size_t i = 0; i < n; ++i) {
        out.push_back(d[p[i] >> 4]);
        out.push_back(d[p[i] & 15]);
    }
    return out;
}

// A header value from something that is not ours (addresses from the dropped file).
std::string header_safe(std::string_view v) {
    std::string out;
    for (unsigned char c : v) {
        if (c < 0x20 || c == 0x7f) continue;
        out.push_back(static_cast<char>(c));
        if (out.size() >= 998) break;
    }
    return out;
}

std::string status_for_4xx(long code) {
    switch (code) {
        case 401:
        case 403:
            return "5.7.1";  // the receiver refuses us: delivery not authorized
        case 404:
        case 410:
            return "5.1.1";  // no such mailbox at the application
        case 413:
            return "5.3.4";  // message too big for the receiver
        case 400:
        case 415:
        case 422:
            return "5.6.0";  // the receiver refuses the content
        default:
            return "5.0.0";
    }
}

class webhook_target final : public import_target {
  public:
    webhook_target(const config& cfg, webhook_options o)
        : cfg_(cfg), o_(std::move(o)), slot_dir_(cfg.run_dir / "targets") {}

    std::string describe() const override { return "webhook:" + o_.describe_url(); }

    std::string plan(const delivery& d) override {
        return idempotency_key(d.fingerprint, d.recipient);
    }

    result deliver(const delivery& d, const std::string& planned, sync_set&) override {
        try {
            return post(d, planned);
        } catch (const std::exception& e) {
            return {result_kind::temporary,
                    "4.3.0",
                    "webhook " + o_.describe_url() + ": " + reason_text(e.what()),
                    {}};
        }
    }

    // A receiver cannot be asked whether it got a request: deliver again with the same key.
    bool delivered(const std::string&) override { return false; }

  private:
    std::optional<std::string> secret(const std::string& mailbox) {
        try {
            if (!secrets_) secrets_ = secret_store::open(cfg_, true);
            return secrets_->get(secret_name::target_secret(mailbox));
        } catch (const std::exception& e) {
            secrets_.reset();  // no store yet: look again next time
            return std::nullopt;
        }
    }

    result post(const delivery& d, const std::string& key) {
        auto sec = secret(d.mailbox);
        if (o_.auth != webhook_options::auth::none && !sec)
            return {result_kind::temporary,
                    "4.7.0",
                    "webhook " + o_.describe_url() + ": auth=" +
                        (o_.auth == webhook_options::auth::bearer ? "bearer" : "basic") +
                        " needs the mailbox's target.secret (mxctl mailbox set " + d.mailbox +
                        " target.secret=-)",
                    {}};
        std::string body;
        if (o_.body == webhook_options::format::json) {
            json_body_options jo;
            jo.inline_max = o_.inline_max;
            jo.timeout = std::max(o_.timeout, std::chrono::milliseconds(10000));
            auto r = build_json_body(d, key, jo, body);
            if (r.kind != result_kind::imported) return r;
            if (body.size() > o_.max_json_bytes)
                return {result_kind::permanent,
                        "5.3.4",
                        "JSON body of " + std::to_string(body.size()) + " bytes exceeds the limit",
                        {}};
        } else {
            body = util::read_file(d.source);
        }

        std::int64_t ts = static_cast<std::int64_t>(::time(nullptr));
        curl::slist headers;
        headers.append(o_.body == webhook_options::format::json
                           ? "Content-Type: application/json; charset=utf-8"
                           : "Content-Type: message/rfc822");
        headers.append("Expect:");  // no 100-continue round trip for large bodies
        headers.append("Idempotency-Key: " + key);
        headers.append("X-Mx-Timestamp: " + std::to_string(ts));
        if (sec && o_.sign)
            headers.append("X-Mx-Signature: sha256=" + webhook_signature(*sec, ts, body));
        headers.append("X-Mx-Recipient: " + header_safe(d.recipient));
        if (d.info) {
            const auto& env = d.info->env;
            headers.append("X-Mx-Sender: " + (env.sender_known && env.sender.empty()
                                                  ? std::string("<>")
                                                  : header_safe(env.sender)));
        }
        headers.append("X-Mx-Mailbox: " + header_safe(d.mailbox));
        headers.append("X-Mx-Connector: " + header_safe(d.connector));
        if (sec && o_.auth == webhook_options::auth::bearer)
            headers.append("Authorization: Bearer " + header_safe(*sec));

        if (!h_) {
            h_.emplace();
            setup_handle();
        }
        auto& h = *h_;
        h.set(CURLOPT_HTTPHEADER, "CURLOPT_HTTPHEADER", headers);
        h.set(CURLOPT_POSTFIELDS, "CURLOPT_POSTFIELDS", static_cast<void*>(body.data()));
        h.set(CURLOPT_POSTFIELDSIZE_LARGE, "CURLOPT_POSTFIELDSIZE_LARGE",
              static_cast<long>(body.size()));
        if (sec && o_.auth == webhook_options::auth::basic) {
            h.set(CURLOPT_HTTPAUTH, "CURLOPT_HTTPAUTH", static_cast<long>(CURLAUTH_BASIC));
            h.set(CURLOPT_USERNAME, "CURLOPT_USERNAME", o_.user);
            h.set(CURLOPT_PASSWORD, "CURLOPT_PASSWORD", *sec);
        }
        capture cap;
        cap.limit = o_.max_response;
        h.set(CURLOPT_WRITEDATA, "CURLOPT_WRITEDATA", static_cast<void*>(&cap));
        h.set(CURLOPT_HEADERDATA, "CURLOPT_HEADERDATA", static_cast<void*>(&cap));

        bool bounded = true;
        auto slot =
            acquire_slot(slot_dir_, "webhook:" + o_.url, o_.concurrency, o_.timeout, bounded);
        if (!slot && bounded)
            return {result_kind::temporary,
                    "4.4.5",
                    "webhook " + o_.describe_url() + ": all " + std::to_string(o_.concurrency) +
                        " delivery slots stayed busy",
                    {}};
        CURLcode rc = h.perform();
        slot.reset();
        if (sec && o_.auth == webhook_options::auth::basic) {
            // The password must not linger in the handle.
            h.set(CURLOPT_PASSWORD, "CURLOPT_PASSWORD", static_cast<const char*>(nullptr));
            h.set(CURLOPT_USERNAME, "CURLOPT_USERNAME", static_cast<const char*>(nullptr));
            h.set(CURLOPT_HTTPAUTH, "CURLOPT_HTTPAUTH", static_cast<long>(CURLAUTH_NONE));
        }
        http_answer a;
        a.curl_code = rc;
        if (rc == CURLE_OK) {
            a.status = h.response_code();
        } else {
            a.error = h.describe(rc);
        }
        a.body = std::move(cap.body);
        a.retry_after_header = std::move(cap.retry_after);
        auto r = classify_http(a, o_.describe_url(), ::time(nullptr));
        if (r.kind == result_kind::imported) r.location = key;
        return r;
    }

    struct capture {
        std::string body, retry_after;
        std::size_t limit = 4096;
        bool new_response = true;
    };

    static std::size_t on_body(char* p, std::size_t size, std::size_t n, void* ud) noexcept {
        try {
            auto* c = static_cast<capture*>(ud);
            std::size_t len = size * n;
            if (c->body.size() < c->limit)
                c->body.append(p, std::min(len, c->limit - c->body.size()));
            return len;
        } catch (...) {
            return 0;  // aborts the transfer: no exception into libcurl
        }
    }

    static std::size_t on_header(char* p, std::size_t size, std::size_t n, void* ud) noexcept {
        try {
            auto* c = static_cast<capture*>(ud);
            std::string_view line(p, size * n);
            if (line.rfind("HTTP/", 0) == 0) c->retry_after.clear();  // a new response
            static constexpr std::string_view name = "retry-after:";
            if (line.size() > name.size()) {
                bool match = true;
                for (std::size_t i = 0; i < name.size() && match; ++i)
                    match = std::tolower(static_cast<unsigned char>(line[i])) == name[i];
                if (match) {
                    auto v = line.substr(name.size());
                    while (!v.empty() && (v.front() == ' ' || v.front() == '\t'))
                        v.remove_prefix(1);
                    while (!v.empty() && (v.back() == '\r' || v.back() == '\n' || v.back() == ' '))
                        v.remove_suffix(1);
                    c->retry_after.assign(v.substr(0, 200));
                }
            }
            return size * n;
        } catch (...) {
            return 0;
        }
    }

    void setup_handle() {
        auto& h = *h_;
        h.set(CURLOPT_URL, "CURLOPT_URL", o_.url);
        h.set(CURLOPT_POST, "CURLOPT_POST", 1L);
        h.set(CURLOPT_PROTOCOLS_STR, "CURLOPT_PROTOCOLS_STR", "http,https");
        h.set(CURLOPT_FOLLOWLOCATION, "CURLOPT_FOLLOWLOCATION", 0L);
        // parse_webhook_spec allows credentials over http:// only to loopback: never via a proxy.
        if (o_.url.rfind("http://", 0) == 0) h.set(CURLOPT_PROXY, "CURLOPT_PROXY", std::string());
        h.set(CURLOPT_SSL_VERIFYPEER, "CURLOPT_SSL_VERIFYPEER", 1L);
        h.set(CURLOPT_SSL_VERIFYHOST, "CURLOPT_SSL_VERIFYHOST", 2L);
        if (!o_.ca_file.empty()) h.set(CURLOPT_CAINFO, "CURLOPT_CAINFO", o_.ca_file);
        h.set(CURLOPT_TIMEOUT_MS, "CURLOPT_TIMEOUT_MS", static_cast<long>(o_.timeout.count()));
        h.set(CURLOPT_CONNECTTIMEOUT_MS, "CURLOPT_CONNECTTIMEOUT_MS",
              static_cast<long>(o_.connect_timeout.count()));
        h.set(CURLOPT_TCP_KEEPALIVE, "CURLOPT_TCP_KEEPALIVE", 1L);
        h.set(CURLOPT_USERAGENT, "CURLOPT_USERAGENT", "mx-connector-webhook/1");
        h.set_callback(CURLOPT_WRITEFUNCTION, "CURLOPT_WRITEFUNCTION", &on_body);
        h.set_callback(CURLOPT_HEADERFUNCTION, "CURLOPT_HEADERFUNCTION", &on_header);
    }

    const config& cfg_;
    webhook_options o_;
    std::filesystem::path slot_dir_;
    std::optional<curl::easy> h_;
    std::optional<secret_store> secrets_;
};

}  // namespace

std::string webhook_signature(std::string_view secret, std::int64_t timestamp,
                              std::string_view body) {
    struct mac_holder {
        EVP_MAC* mac = nullptr;
        EVP_MAC_CTX* ctx = nullptr;
        ~mac_holder() {
            if (ctx) EVP_MAC_CTX_free(ctx);
            if (mac) EVP_MAC_free(mac);
        }
    } m;
    m.mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    if (!m.mac) throw target_error("EVP_MAC_fetch(HMAC) failed");
    m.ctx = EVP_MAC_CTX_new(m.mac);
    if (!m.ctx) throw target_error("EVP_MAC_CTX_new failed");
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    if (EVP_MAC_init(m.ctx, reinterpret_cast<const unsigned char*>(secret.data()), secret.size(),
                     params) != 1)
        throw target_error("EVP_MAC_init failed");
    std::string ts = std::to_string(timestamp) + ".";
    if (EVP_MAC_update(m.ctx, reinterpret_cast<const unsigned char*>(ts.data()), ts.size()) != 1 ||
        EVP_MAC_update(m.ctx, reinterpret_cast<const unsigned char*>(body.data()), body.size()) !=
            1)
        throw target_error("EVP_MAC_update failed");
    unsigned char out[EVP_MAX_MD_SIZE];
    std::size_t len = 0;
    if (EVP_MAC_final(m.ctx, out, &len, sizeof out) != 1)
        throw target_error("EVP_MAC_final failed");
    return hex(out, len);
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v, std::time_t now) {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    if (std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        if (v.size() > 9) return std::chrono::seconds(999999999);
        long n = 0;
        std::from_chars(v.data(), v.data() + v.size(), n);
        return std::chrono::seconds(n);
    }
    std::string s(v);
    std::time_t t = curl_getdate(s.c_str(), nullptr);
    if (t == -1) return std::nullopt;
    return std::chrono::seconds(t > now ? t - now : 0);
}

result classify_http(const http_answer& a, const std::string& where, std::time_t now) {
    auto text = [&](std::string head) {
        std::string t = reason_text(a.body, 300);
        return head + (t.empty() ? "" : ": " + t);
    };
    if (a.status == 0) {
        std::string what = "webhook " + where + ": " + reason_text(a.error, 300);
        auto rc = static_cast<CURLcode>(a.curl_code);
        std::string status = rc == CURLE_COULDNT_CONNECT || rc == CURLE_OPERATION_TIMEDOUT ||
                                     rc == CURLE_COULDNT_RESOLVE_HOST
                                 ? "4.4.1"   // no answer from the host
                                 : "4.4.2";  // connection broken
        if (rc == CURLE_PEER_FAILED_VERIFICATION || rc == CURLE_SSL_CONNECT_ERROR ||
            rc == CURLE_SSL_CACERT_BADFILE)
            status = "4.7.5";  // TLS: fixed by an administrator, never bounced
        return {result_kind::temporary, status, what, {}};
    }
    std::string head = "webhook " + where + " answered HTTP " + std::to_string(a.status);
    if (a.status >= 200 && a.status < 300) return {result_kind::imported, "2.0.0", head, {}};
    if (a.status >= 400 && a.status < 500 && a.status != 408 && a.status != 429)
        return {result_kind::permanent, status_for_4xx(a.status), text(head), {}};
    result r{result_kind::temporary, a.status == 429 ? "4.7.0" : "4.3.0", text(head), {}};
    if (a.status >= 300 && a.status < 400) r.detail += " (redirects are not followed)";
    r.retry_after = parse_retry_after(a.retry_after_header, now);
    return r;
}

std::unique_ptr<import_target> make_webhook_target(const config& cfg, std::string_view rest) {
    return std::make_unique<webhook_target>(
        cfg, parse_webhook_spec(rest, config_reader(cfg, "targets")));
}

}  // namespace mx::importer
