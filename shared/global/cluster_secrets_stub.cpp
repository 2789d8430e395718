// Stand-in for the encrypted cluster secrets (cluster_secrets.cpp replaces this file): refuses
// to store a secret rather than drop it, and has nothing to sync.
#include <stdexcept>

#include "global/cluster_secrets.hpp"

namespace mx::cluster {

void put_secret(pqxx::transaction_base&, const cluster_config&, std::string_view,
                std::string_view) {
    throw std::runtime_error("secrets cannot be stored in cluster mode by this build");
}

void remove_secret_prefix(pqxx::transaction_base&, std::string_view) {}

std::size_t sync_secrets(pqxx::connection&, const cluster_config&, secret_store&) {
    return 0;
}

}  // namespace mx::cluster
