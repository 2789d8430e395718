// message_json_detail: what the parts of the JSON converter share (message_json.cpp: the MIME
// walk; message_json_headers.cpp: header fields; message_json_structure.cpp: repairs before
// parsing). Internal to mx_message_json.
#pragma once

#include <gmime/gmime.h>
#include <nlohmann/json.hpp>

#include <memory>
#include <string>
#include <string_view>

namespace mx::importer::detail {

struct gobject_unref {
    void operator()(gpointer p) const {
        if (p) g_object_unref(p);
    }
};
template <class T>
using gobject_ptr = std::unique_ptr<T, gobject_unref>;

// ASCII lower case; blanks (GLib's isspace) trimmed at both ends.
std::string lower(std::string s);
std::string_view trimmed(std::string_view v);
// The bytes GMime should parse: `data`, or a repaired copy in `storage` (header blocks that end
// without an empty line get one, cut-off multiparts get their close delimiters; see
// message_json_structure.cpp).
std::string_view with_header_boundaries(std::string_view data, std::string& storage);
// Any bytes -> valid UTF-8 (invalid sequences become U+FFFD).
std::string make_valid(std::string_view s);
// The field's value as a reader shows it: unfolded, encoded-words decoded, valid UTF-8.
std::string header_text(GMimeHeader* h);
// The first `name` field (From, To, Cc) as [{name, address}], groups flattened.
nlohmann::json addresses(GMimeObject* msg, const char* name);

}  // namespace mx::importer::detail
