// cluster_secrets: secrets (SMTP passwords, OAuth tokens, webhook signing secrets) replicated
// through PostgreSQL, encrypted at rest (table mxc.secrets; library mx_cluster).
//
// Each value is sealed with AES-256-GCM (OpenSSL EVP): a random 12-byte nonce per write, the
// secret's name as additional authenticated data (a row copied under another name does not
// open), the 16-byte tag stored with the ciphertext. The key is the cluster key file
// (cluster_config::key_file): 32 raw bytes or 64 hex digits (a trailing newline allowed),
// present only on the hosts that send mail; hosts that only run the milter never need it.
// Promises: put_secret() and remove_secret_prefix() run in the caller's transaction (the mxctl
// write is all or nothing); sync_secrets() makes the local secret store equal to PostgreSQL
// (every row decrypted and stored, local names without a row removed) and returns how many
// secrets it stored; without a key file it changes nothing and says so once per process.
// Security: the key file must be a regular file (not a symlink: O_NOFOLLOW) readable by its
// owner only (no group/other bits), else key_error; values and the key never reach a log or
// an exception text — errors name the secret, never its value.
#pragma once

#include <pqxx/pqxx>

#include <array>
#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "global/cluster.hpp"
#include "global/secrets.hpp"

namespace mx::cluster {

class key_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A sealed value that does not open: wrong key, another name, or changed bytes.
class secret_error : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

using secret_key = std::array<unsigned char, 32>;

// The key from `file`; nullopt when the file does not exist; key_error when it is a symlink,
// not a regular file, readable or writable by group/other, or not 32 bytes / 64 hex digits.
std::optional<secret_key> load_key(const std::filesystem::path& file);

// nonce (12) || ciphertext || tag (16), and back. open_secret throws secret_error.
std::string seal_secret(const secret_key& key, std::string_view name, std::string_view value);
std::string open_secret(const secret_key& key, std::string_view name, std::string_view sealed);

// Encrypts with the key file's key and upserts mxc.secrets(name). Throws key_error when this
// host has no key file.
void put_secret(pqxx::transaction_base& tx, const cluster_config& c, std::string_view name,
                std::string_view value);
// Deletes every secret whose name starts with prefix (e.g. "mailbox/a@b/").
void remove_secret_prefix(pqxx::transaction_base& tx, std::string_view prefix);
// PostgreSQL -> the local store (see the top), in a read transaction of its own on `conn` (so
// none may be open on it); rows that do not open are logged by name and left alone locally.
// Returns the number of secrets stored (0 without a key file). Throws key_error for a key file
// that is refused, pqxx errors when PostgreSQL does not answer.
std::size_t sync_secrets(pqxx::connection& conn, const cluster_config& c, secret_store& local);

}  // namespace mx::cluster
