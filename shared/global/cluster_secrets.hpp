// cluster_secrets: SMTP passwords, OAuth secrets and webhook secrets replicated through
// PostgreSQL, encrypted at rest with the cluster key (docs/cluster.md).
//
// Promises: put_secret()/remove_secret_prefix() run in the caller's transaction (the same one
// as the catalog change they belong to: all or nothing); sync_secrets() makes the local secret
// store equal to PostgreSQL's and returns how many secrets it wrote or removed.
// Security: values are never logged; a host without the key file cannot decrypt (and does not
// need to when it only runs the milter).
#pragma once

#include <pqxx/pqxx>

#include <cstddef>
#include <string_view>

#include "global/cluster.hpp"
#include "global/secrets.hpp"

namespace mx::cluster {

void put_secret(pqxx::transaction_base& tx, const cluster_config& c, std::string_view name,
                std::string_view value);
void remove_secret_prefix(pqxx::transaction_base& tx, std::string_view prefix);
std::size_t sync_secrets(pqxx::connection& conn, const cluster_config& c, secret_store& local);

}  // namespace mx::cluster
