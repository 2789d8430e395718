// mailbox_path: the default Maildir of a mailbox, <mail_root>/<domain>/<local>/, built so that
// no address can ever name a path outside mail_root.
//
// Encoding of each component: bytes outside [A-Za-z0-9!#$&'*+=?^_`{|}~.-] (so '/', '%', '@',
// NUL, control and 8-bit bytes) and a leading '.' become %XX; an empty local part (catch-all
// "@domain") is "@" (which encoding never produces otherwise). Components are thus never "",
// "." or "..", and never contain '/': the result is always a direct grandchild of mail_root.
// The encoding is injective, so two mailboxes never share a Maildir.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace mx::importer {

std::string encode_path_component(std::string_view s);
// nullopt when the key is not "local@domain" / "@domain".
std::optional<std::filesystem::path> mailbox_maildir(const std::filesystem::path& mail_root,
                                                     std::string_view mailbox_key);

}  // namespace mx::importer
