// cluster: the [cluster] section — several hosts sharing PostgreSQL as the source of truth.
//
// Promises: cluster_of() returns std::nullopt when the config has no [cluster] section (the
// embedded single-host default: nothing here is used, no PostgreSQL needed), else a validated
// cluster_config, or throws config_error naming the file and the key.
// Security: `postgresql` is a libpq conninfo or URI and may carry a password: never log or
// print it as is — use redact_conninfo(). Prefer a ~/.pgpass / PGPASSFILE or a client
// certificate (sslcert/sslkey) to a password in the config file.
#pragma once

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "global/config.hpp"

namespace mx::cluster {

struct cluster_config {
    std::string postgresql;  // libpq conninfo or URI (secret-bearing)
    std::string node;        // this host's name in the cluster; default: config hostname
    // A host whose importer has not renewed its lease for this long is gone: another host
    // takes over its claimed files (.work/<node>/).
    std::chrono::seconds lease{60};
    // > 0: the milter answers 451 4.3.0 instead of deciding from a replica older than this.
    std::chrono::seconds max_staleness{0};
    // How often a follower re-checks the primary generation (repairs missed notifications).
    std::chrono::seconds check_interval{5};
    // libpq connect_timeout for every connection we open.
    std::chrono::seconds connect_timeout{5};
    // AEAD key for the secrets kept in PostgreSQL: 32 random bytes, hex or raw, mode 0600.
    // Default <state_dir>/cluster.key. Hosts that only run the milter never need it.
    std::filesystem::path key_file;
};

// nullopt: no [cluster] section (single host).
std::optional<cluster_config> cluster_of(const config& cfg);

// The conninfo/URI with any password replaced by "***" (for logs, status and errors).
std::string redact_conninfo(std::string_view conninfo);

}  // namespace mx::cluster
