// console_users: Argon2id-hashed accounts of mx-console in <state_dir>/console/users.json.
#include <argon2.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <functional>
#include <system_error>

#include "console_users.hpp"
#include "ops.hpp"
#include "util/fs.hpp"

namespace mx::ops {
namespace {

// OWASP's Argon2id baseline: 19 MiB, 2 passes, 1 lane.
constexpr std::uint32_t argon_t = 2, argon_m_kib = 19 * 1024, argon_p = 1;
constexpr std::size_t salt_len = 16, hash_len = 32;

struct fd_guard {
    int fd = -1;
    ~fd_guard() {
        if (fd >= 0) ::close(fd);
    }
};

std::string read_all(int fd) {
    std::string out;
    char buf[8192];
    for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
    }
    return out;
}

nlohmann::json to_json(const std::map<std::string, console_user>& users) {
    nlohmann::json j = {{"users", nlohmann::json::object()}};
    for (auto& [n, u] : users) j["users"][n] = {{"hash", u.hash}, {"read_only", u.read_only}};
    return j;
}

void save(const config& cfg, const std::map<std::string, console_user>& users) {
    auto dir = console_dir(cfg);
    auto tmp = dir / "users.json.tmp";
    fd_guard f{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (f.fd < 0) throw std::system_error(errno, std::generic_category(), "open " + tmp.string());
    std::string text = to_json(users).dump(2) + "\n";
    if (::fchmod(f.fd, 0600) != 0 ||
        ::write(f.fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::fsync(f.fd) != 0)
        throw std::system_error(errno, std::generic_category(), "write " + tmp.string());
    if (::rename(tmp.c_str(), (dir / "users.json").c_str()) != 0)
        throw std::system_error(errno, std::generic_category(), "rename " + tmp.string());
    util::fsync_dir(dir);
}

// Locked read-modify-write of the account file.
void modify(const config& cfg,
            const std::function<void(std::map<std::string, console_user>&)>& fn) {
    auto dir = console_dir(cfg);
    util::make_dirs(dir, 0700);
    fd_guard lock{
        ::open((dir / "users.lock").c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600)};
    if (lock.fd < 0 || ::flock(lock.fd, LOCK_EX) != 0)
        throw std::system_error(errno, std::generic_category(), "lock " + dir.string());
    auto users = load_console_users(cfg);
    fn(users);
    save(cfg, users);
}

}  // namespace

std::filesystem::path console_dir(const config& cfg) {
    return cfg.state_dir / "console";
}

bool valid_console_user_name(const std::string& name) {
    if (name.empty() || name.size() > 64) return false;
    for (unsigned char c : name)
        if (!std::isalnum(c) && c != '.' && c != '_' && c != '-' && c != '@') return false;
    return true;
}

std::map<std::string, console_user> load_console_users(const config& cfg) {
    std::map<std::string, console_user> out;
    auto path = console_dir(cfg) / "users.json";
    fd_guard f{::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)};
    if (f.fd < 0) {
        if (errno == ENOENT) return out;
        throw std::system_error(errno, std::generic_category(), "open " + path.string());
    }
    auto j = nlohmann::json::parse(read_all(f.fd), nullptr, false);
    if (j.is_discarded() || !j.contains("users") || !j["users"].is_object())
        throw op_error(path.string() + " is damaged (not the console's account file)");
    for (auto& [n, u] : j["users"].items()) {
        if (!u.is_object()) continue;
        out[n] = console_user{n, json_str(u, "hash"), u.value("read_only", false)};
    }
    return out;
}

std::string random_hex(std::size_t n) {
    std::string bytes(n, '\0');
    std::size_t got = 0;
    while (got < n) {
        ssize_t r = ::getrandom(bytes.data() + got, n - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw std::system_error(errno, std::generic_category(), "getrandom");
        got += static_cast<std::size_t>(r);
    }
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (unsigned char c : bytes) {
        out += digits[c >> 4];
        out += digits[c & 15];
    }
    return out;
}

std::string hash_password(const std::string& password) {
    std::string salt(salt_len, '\0');
    if (::getrandom(salt.data(), salt.size(), 0) != static_cast<ssize_t>(salt.size()))
        throw std::system_error(errno, std::generic_category(), "getrandom");
    std::size_t len =
        argon2_encodedlen(argon_t, argon_m_kib, argon_p, salt_len, hash_len, Argon2_id);
    std::string out(len, '\0');
    int rc = argon2id_hash_encoded(argon_t, argon_m_kib, argon_p, password.data(), password.size(),
                                   salt.data(), salt.size(), hash_len, out.data(), out.size());
    if (rc != ARGON2_OK)
        throw std::runtime_error(std::string("argon2id_hash_encoded: ") + argon2_error_message(rc));
    out.resize(std::strlen(out.c_str()));
    return out;
}

bool verify_password(const std::string& encoded_hash, const std::string& password) {
    if (encoded_hash.rfind("$argon2id$", 0) != 0) return false;
    return argon2id_verify(encoded_hash.c_str(), password.data(), password.size()) == ARGON2_OK;
}

void console_user_add(const config& cfg, const std::string& name, const std::string& password,
                      bool read_only) {
    if (!valid_console_user_name(name))
        throw op_error("invalid user name '" + name + "' (letters, digits, . _ - @; 1..64)");
    if (password.size() < 12) throw op_error("the password must have at least 12 characters");
    auto hash = hash_password(password);
    modify(cfg, [&](auto& users) {
        if (users.count(name))
            throw op_error("console user '" + name +
                           "' exists (change it: mxctl console user passwd)");
        users[name] = console_user{name, hash, read_only};
    });
}

void console_user_remove(const config& cfg, const std::string& name) {
    modify(cfg, [&](auto& users) {
        if (!users.erase(name)) throw op_error("no console user '" + name + "'");
    });
}

void console_user_passwd(const config& cfg, const std::string& name, const std::string& password) {
    if (password.size() < 12) throw op_error("the password must have at least 12 characters");
    auto hash = hash_password(password);
    modify(cfg, [&](auto& users) {
        auto it = users.find(name);
        if (it == users.end()) throw op_error("no console user '" + name + "'");
        it->second.hash = hash;
    });
}

}  // namespace mx::ops
