#include "global/cluster_db.hpp"

namespace mx::cluster {

std::unique_ptr<pqxx::connection> connect(const cluster_config& c, std::string_view program) {
    std::string info = c.postgresql;
    const bool uri = info.rfind("postgres://", 0) == 0 || info.rfind("postgresql://", 0) == 0;
    const std::string timeout = std::to_string(c.connect_timeout.count());
    const std::string app = "mx-connector/" + std::string(program);
    if (uri) {
        info += (info.find('?') == std::string::npos ? "?" : "&");
        info += "connect_timeout=" + timeout + "&application_name=" + app;
    } else {
        info += " connect_timeout=" + timeout + " application_name='" + app + "'";
    }
    return std::make_unique<pqxx::connection>(info);
}

void create_schema(pqxx::transaction_base& tx) {
    // One schema for everything of ours, so a shared database (PostfixAdmin, an ERP) keeps its
    // own namespace clean.
    tx.exec0("CREATE SCHEMA IF NOT EXISTS mxc");
    create_catalog_schema(tx);
    create_import_schema(tx);
    create_secret_schema(tx);
}

}  // namespace mx::cluster
