// console context: [console] settings and the console's ops::env (store, secrets, shm).
#include <arpa/inet.h>

#include <charconv>

#include "console.hpp"
#include "global/config_reader.hpp"

namespace mx::console {

bool console_settings::loopback() const {
    if (host == "localhost" || host == "::1") return true;
    in_addr a{};
    if (::inet_pton(AF_INET, host.c_str(), &a) == 1) return (ntohl(a.s_addr) >> 24) == 127;
    return false;
}

console_settings read_settings(const config& cfg) {
    console_settings s;
    config_reader r(cfg, "console");
    auto where = [&](const char* key) { return r.where(key); };
    if (r.has("listen")) {
        std::string l = r.string("listen", "");
        auto colon = l.rfind(':');
        int port = -1;
        if (colon != std::string::npos) {
            auto [p, ec] = std::from_chars(l.data() + colon + 1, l.data() + l.size(), port);
            if (ec != std::errc() || p != l.data() + l.size()) port = -1;
        }
        if (colon == std::string::npos || colon == 0 || port < 1 || port > 65535)
            r.fail("listen", "must be HOST:PORT (e.g. 127.0.0.1:8025), got '" + l + "'");
        s.host = l.substr(0, colon);
        if (s.host.size() > 2 && s.host.front() == '[' && s.host.back() == ']')
            s.host = s.host.substr(1, s.host.size() - 2);
        s.port = port;
    }
    s.tls_cert = r.path("tls_cert", s.tls_cert).string();
    s.tls_key = r.path("tls_key", s.tls_key).string();
    s.sample_seconds = static_cast<int>(r.integer("sample_seconds", s.sample_seconds, 1, 3600));
    if (s.tls_cert.empty() != s.tls_key.empty())
        throw config_error(where("tls_cert") + " and tls_key go together: set both or neither");
    if (!s.loopback() && s.tls_cert.empty())
        throw config_error(where("listen") + " is not a loopback address (" + s.host +
                           "): set [console] tls_cert and tls_key, or listen on 127.0.0.1");
    return s;
}

store& console_env::open_store() {
    std::lock_guard lock(open_mu_);
    if (!store_) {
        store_ = store::open(cfg_, false);
        if (auto* s = shm()) store_->attach(s);
    }
    return *store_;
}

secret_store& console_env::secrets() {
    std::lock_guard lock(open_mu_);
    if (!secrets_) secrets_ = secret_store::open(cfg_, false);
    return *secrets_;
}

shm_state* console_env::shm() {
    std::call_once(shm_once_, [this] {  // request threads and the sampler may race here
        try {
            shm_ = shm_state::attach(cfg_);
        } catch (const std::exception&) {
            // No counters and no generation bump: the daemons still notice at their next check.
        }
    });
    return shm_ ? &*shm_ : nullptr;
}

std::shared_ptr<const mailbox_index> console_env::mailboxes() {
    auto v = open_store_read_only().read();
    auto gen = v.generation();
    std::lock_guard lock(index_mu_);
    if (index_ && index_->generation == gen) return index_;
    auto idx = std::make_shared<mailbox_index>();
    idx->generation = gen;
    v.for_each_mailbox([&](const mailbox& m) {
        ++idx->per_connector[m.connector];
        idx->boxes.push_back(m);
        return true;
    });
    index_ = idx;
    return index_;
}

}  // namespace mx::console
