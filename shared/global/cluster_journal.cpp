// Placeholder: the cluster-wide import journal and leases in PostgreSQL (filled in by the cluster
// work).
#include <pqxx/pqxx>

#include "global/cluster_db.hpp"

namespace mx::cluster {

void create_import_schema(pqxx::transaction_base&) {}

}  // namespace mx::cluster
