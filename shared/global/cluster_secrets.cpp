// cluster_secrets: AES-256-GCM sealed secrets in mxc.secrets (see the header).
#include "global/cluster_secrets.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <pqxx/pqxx>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <set>

#include <spdlog/spdlog.h>

#include "global/cluster_db.hpp"
#include "util/socket_io.hpp"

namespace mx::cluster {
namespace {

constexpr std::size_t nonce_len = 12, tag_len = 16;

struct ctx_free {
    void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using cipher_ctx = std::unique_ptr<EVP_CIPHER_CTX, ctx_free>;

cipher_ctx new_ctx() {
    cipher_ctx c(EVP_CIPHER_CTX_new());
    if (!c) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
    return c;
}

const auto* bytes(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

// The key bytes of a file's content: 32 raw bytes, or 64 hex digits with an optional newline.
std::optional<secret_key> parse_key(std::string s) {
    secret_key k{};
    if (s.size() == k.size()) {
        std::memcpy(k.data(), s.data(), k.size());
        OPENSSL_cleanse(s.data(), s.size());
        return k;
    }
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (s.size() != 2 * k.size()) return std::nullopt;
    for (std::size_t i = 0; i < k.size(); ++i) {
        int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        k[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    OPENSSL_cleanse(s.data(), s.size());
    return k;
}

}  // namespace

void create_secret_schema(pqxx::transaction_base& tx) {
    tx.exec0(R"(CREATE TABLE IF NOT EXISTS mxc.secrets (
        name       text PRIMARY KEY,
        sealed     bytea NOT NULL,
        updated_at timestamptz NOT NULL DEFAULT now()))");
}

std::optional<secret_key> load_key(const std::filesystem::path& file) {
    util::unique_fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (fd.get() < 0) {
        if (errno == ENOENT) return std::nullopt;
        if (errno == ELOOP)
            throw key_error("cluster key file " + file.string() + " is a symbolic link");
        throw key_error("cannot open the cluster key file " + file.string() + ": " +
                        std::strerror(errno));
    }
    struct stat sb {};
    if (::fstat(fd.get(), &sb) != 0 || !S_ISREG(sb.st_mode))
        throw key_error("cluster key file " + file.string() + " is not a regular file");
    if ((sb.st_mode & 077) != 0)
        throw key_error("cluster key file " + file.string() +
                        " is accessible by group or others (chmod 600 it)");
    std::string s(256, '\0');
    std::size_t n = 0;
    for (;;) {
        ssize_t r = ::read(fd.get(), s.data() + n, s.size() - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw key_error("read " + file.string() + ": " + std::strerror(errno));
        if (r == 0 || (n += static_cast<std::size_t>(r)) == s.size()) break;
    }
    s.resize(n);
    auto k = parse_key(std::move(s));
    if (!k)
        throw key_error("cluster key file " + file.string() +
                        " must hold 32 bytes or 64 hex digits (openssl rand -hex 32)");
    return k;
}

std::string seal_secret(const secret_key& key, std::string_view name, std::string_view value) {
    std::string out(nonce_len + value.size() + tag_len, '\0');
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    if (RAND_bytes(p, static_cast<int>(nonce_len)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    auto c = new_ctx();
    int len = 0;
    if (EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) != 1 ||
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, nonce_len, nullptr) != 1 ||
        EVP_EncryptInit_ex(c.get(), nullptr, nullptr, key.data(), p) != 1 ||
        EVP_EncryptUpdate(c.get(), nullptr, &len, bytes(name), static_cast<int>(name.size())) !=
            1 ||
        EVP_EncryptUpdate(c.get(), p + nonce_len, &len, bytes(value),
                          static_cast<int>(value.size())) != 1 ||
        EVP_EncryptFinal_ex(c.get(), p + nonce_len + len, &len) != 1 ||
        EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_GET_TAG, tag_len, p + nonce_len + value.size()) !=
            1)
        throw std::runtime_error("EVP AES-256-GCM encryption failed");
    return out;
}

std::string open_secret(const secret_key& key, std::string_view name, std::string_view sealed) {
    const std::string what = "secret " + std::string(name) + " does not open";
    if (sealed.size() < nonce_len + tag_len) throw secret_error(what + " (too short)");
    const std::size_t n = sealed.size() - nonce_len - tag_len;
    std::string out(n, '\0');
    auto* o = reinterpret_cast<unsigned char*>(out.data());
    const auto* s = bytes(sealed);
    std::array<unsigned char, tag_len> tag{};
    std::memcpy(tag.data(), s + nonce_len + n, tag_len);
    auto c = new_ctx();
    int len = 0;
    bool ok = EVP_DecryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_IVLEN, nonce_len, nullptr) == 1 &&
              EVP_DecryptInit_ex(c.get(), nullptr, nullptr, key.data(), s) == 1 &&
              EVP_DecryptUpdate(c.get(), nullptr, &len, bytes(name),
                                static_cast<int>(name.size())) == 1 &&
              EVP_DecryptUpdate(c.get(), o, &len, s + nonce_len, static_cast<int>(n)) == 1 &&
              EVP_CIPHER_CTX_ctrl(c.get(), EVP_CTRL_GCM_SET_TAG, tag_len, tag.data()) == 1 &&
              EVP_DecryptFinal_ex(c.get(), o + len, &len) == 1;
    if (!ok) {
        OPENSSL_cleanse(out.data(), out.size());
        throw secret_error(what + " (wrong key, another name, or changed bytes)");
    }
    return out;
}

void put_secret(pqxx::transaction_base& tx, const cluster_config& c, std::string_view name,
                std::string_view value) {
    auto key = load_key(c.key_file);
    if (!key)
        throw key_error("no cluster key file " + c.key_file.string() +
                        ": secrets cannot be stored from this host");
    std::string sealed = seal_secret(*key, name, value);
    OPENSSL_cleanse(key->data(), key->size());
    tx.exec_params0(
        "INSERT INTO mxc.secrets (name, sealed) VALUES ($1, $2::bytea) "
        "ON CONFLICT (name) DO UPDATE SET sealed = EXCLUDED.sealed, updated_at = now()",
        std::string(name), tx.esc_raw(bytes(sealed), sealed.size()));
}

void remove_secret_prefix(pqxx::transaction_base& tx, std::string_view prefix) {
    // left() instead of LIKE: a '%' or '_' in a name is no pattern.
    tx.exec_params0("DELETE FROM mxc.secrets WHERE left(name, length($1)) = $1",
                    std::string(prefix));
}

std::size_t sync_secrets(pqxx::connection& conn, const cluster_config& c, secret_store& local) {
    auto key = load_key(c.key_file);
    if (!key) {
        static std::atomic<bool> said{false};
        if (!said.exchange(true))
            spdlog::info(
                "cluster: no key file {} on this host: secrets are not replicated here (only "
                "hosts that send mail need them)",
                c.key_file.string());
        return 0;
    }
    pqxx::read_transaction tx(conn);
    auto rows = tx.exec("SELECT name, sealed FROM mxc.secrets");
    std::set<std::string> present;
    std::size_t stored = 0;
    for (const auto& row : rows) {
        auto name = row[0].as<std::string>();
        present.insert(name);
        try {
            std::string value = open_secret(*key, name, tx.unesc_raw(row[1].c_str()));
            if (local.get(name) != value) local.set(name, value);
            OPENSSL_cleanse(value.data(), value.size());
            ++stored;
        } catch (const secret_error& e) {
            spdlog::error("cluster: {}; the local copy is left as it is", e.what());
        }
    }
    OPENSSL_cleanse(key->data(), key->size());
    for (const auto& n : local.names())
        if (!present.count(n)) local.remove(n);
    return stored;
}

}  // namespace mx::cluster
