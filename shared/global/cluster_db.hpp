// cluster_db: the connection to the cluster's PostgreSQL and its schema (library mx_cluster;
// only programs that talk to PostgreSQL link it — mx-milter never does).
//
// Promises: connect() applies connect_timeout and names the program (application_name) so
// pg_stat_activity shows who is who; create_schema() is idempotent and runs in the caller's
// transaction, so `mxctl cluster init` is all or nothing.
// Security: errors from libpq never contain the password; our own messages use
// redact_conninfo().
#pragma once

#include <pqxx/pqxx>

#include <memory>
#include <string_view>

#include "global/cluster.hpp"

namespace mx::cluster {

// A new connection to the cluster's PostgreSQL with connect_timeout and
// application_name=mx-connector/<program>. Throws pqxx::broken_connection (message redacted by
// libpq: it never contains the password).
std::unique_ptr<pqxx::connection> connect(const cluster_config& c, std::string_view program);

// The whole schema, idempotent (CREATE ... IF NOT EXISTS), in the caller's transaction. Each
// part lives with the code that owns its tables.
void create_schema(pqxx::transaction_base& tx);
void create_catalog_schema(pqxx::transaction_base& tx);  // cluster_catalog.cpp
void create_import_schema(pqxx::transaction_base& tx);   // cluster_journal.cpp
void create_secret_schema(pqxx::transaction_base& tx);   // cluster_secrets.cpp

}  // namespace mx::cluster
