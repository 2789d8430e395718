// Placeholder: connectors, domains, mailboxes, generation, nodes in PostgreSQL (filled in by the
// cluster work).
#include <pqxx/pqxx>

#include "global/cluster_db.hpp"

namespace mx::cluster {

void create_catalog_schema(pqxx::transaction_base&) {}

}  // namespace mx::cluster
