# packaging.cmake: install rules for everything that is not a binary (systemd units, sysusers.d,
# tmpfiles.d, the example configuration, man pages, docs) and the CPack DEB package.
#
# Layout (cmake --install . --prefix P, and the .deb with P=/usr):
#   P/sbin/{mx-milter,mx-importer,mxctl,mx-replica} (rules in milter/, importer/, admin/, replica/)
#   P/lib/systemd/system/mx-{milter,importer}.service
#   P/lib/sysusers.d/mx-connector.conf, P/lib/tmpfiles.d/mx-connector.conf
#   P/share/man/man8/{mx-milter,mx-importer,mxctl,mx-replica}.8.gz
#   P/share/doc/mx-connector/{*.md,examples/mx-connector.toml,postfix-conf/...}
#   /etc/mx-connector/mx-connector.toml when P is /usr (Debian: a conffile), else P/etc/...
# The /etc decision is taken at install time (install(CODE)) so that `--prefix TMP` overrides
# it into TMP, while CPack (which installs with prefix /usr into a DESTDIR) gets /etc.
set(MX_PKG_DIR ${CMAKE_CURRENT_LIST_DIR})
# The package name, not the CMake project name (GNUInstallDirs would say mx_connector).
set(MX_DOCDIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/mx-connector)

install(FILES ${MX_PKG_DIR}/systemd/mx-milter.service ${MX_PKG_DIR}/systemd/mx-importer.service
              ${MX_PKG_DIR}/systemd/mx-console.service ${MX_PKG_DIR}/systemd/mx-replica.service
        DESTINATION lib/systemd/system COMPONENT mx_connector)
install(FILES ${MX_PKG_DIR}/mx-connector.sysusers DESTINATION lib/sysusers.d
        RENAME mx-connector.conf COMPONENT mx_connector)
install(FILES ${MX_PKG_DIR}/mx-connector.tmpfiles DESTINATION lib/tmpfiles.d
        RENAME mx-connector.conf COMPONENT mx_connector)

# Example configuration: /etc for a /usr install, the doc folder always (pristine copy).
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(_mx_etc \"/etc/mx-connector\")
  else()
    set(_mx_etc \"\${CMAKE_INSTALL_PREFIX}/etc/mx-connector\")
  endif()
  file(INSTALL DESTINATION \"\${_mx_etc}\" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES \"${MX_PKG_DIR}/mx-connector.toml\")
" COMPONENT mx_connector)
install(FILES ${MX_PKG_DIR}/mx-connector.toml
        DESTINATION ${MX_DOCDIR}/examples COMPONENT mx_connector)

# Man pages (hand-written roff in packaging/man), gzip'ed like Debian wants them.
find_program(MX_GZIP gzip REQUIRED)
set(MX_MAN_PAGES mx-milter mx-importer mxctl mx-console mx-replica)
set(MX_MAN_OUT)
foreach(page ${MX_MAN_PAGES})
  set(out ${CMAKE_BINARY_DIR}/packaging/man/${page}.8.gz)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/packaging/man
    COMMAND ${MX_GZIP} -9nc ${MX_PKG_DIR}/man/${page}.8 > ${out}
    DEPENDS ${MX_PKG_DIR}/man/${page}.8 VERBATIM)
  list(APPEND MX_MAN_OUT ${out})
endforeach()
add_custom_target(mx_man_pages ALL DEPENDS ${MX_MAN_OUT})
install(FILES ${MX_MAN_OUT} DESTINATION ${CMAKE_INSTALL_MANDIR}/man8 COMPONENT mx_connector)

# Debian's per-package files: copyright, changelog.gz (a native package's changelog; the
# version is the project's), lintian overrides (each with its reason).
set(MX_DEB_VERSION ${PROJECT_VERSION})
configure_file(${MX_PKG_DIR}/debian/changelog.in ${CMAKE_BINARY_DIR}/packaging/changelog @ONLY)
add_custom_command(OUTPUT ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  COMMAND ${MX_GZIP} -9nc ${CMAKE_BINARY_DIR}/packaging/changelog >
          ${CMAKE_BINARY_DIR}/packaging/changelog.gz
  DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog VERBATIM)
add_custom_target(mx_deb_changelog ALL DEPENDS ${CMAKE_BINARY_DIR}/packaging/changelog.gz)
install(FILES ${MX_PKG_DIR}/debian/copyright ${CMAKE_BINARY_DIR}/packaging/changelog.gz
        DESTINATION ${MX_DOCDIR} COMPONENT mx_connector)
install(FILES ${MX_PKG_DIR}/debian/lintian-overrides DESTINATION share/lintian/overrides
        RENAME mx-connector COMPONENT mx_connector)

# Documentation and the Postfix snippets the docs refer to.
file(GLOB MX_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${MX_DOCS} ${CMAKE_SOURCE_DIR}/README.md
        DESTINATION ${MX_DOCDIR} COMPONENT mx_connector)
if(IS_DIRECTORY ${CMAKE_SOURCE_DIR}/postfix-conf)
  install(DIRECTORY ${CMAKE_SOURCE_DIR}/postfix-conf/ DESTINATION ${MX_DOCDIR}/postfix-conf
          COMPONENT mx_connector PATTERN "*~" EXCLUDE)
endif()

# ---- CPack: mx-connector_<version>_amd64.deb ------------------------------------------------
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mx-connector)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "MX Connector")
set(CPACK_PACKAGE_CONTACT "MX Connector maintainers <maintainers@mx-connector.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "Postfix milter and importer delivering Internet mail into business applications")
# Lines of at most 79 characters (lintian: extended-description-line-too-long).
set(CPACK_PACKAGE_DESCRIPTION
    "MX Connector lets ERP, CRM and helpdesk applications receive mail for many\n\
addresses. A milter makes Postfix refuse unknown recipients during the SMTP\n\
dialogue, Postfix drops accepted mail into per-connector drop folders, and an\n\
importer moves every message exactly once into its mailbox or into ImportFailed\n\
with an RFC 3464 non-delivery report.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION mail)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://mx-connector.invalid/")
# Library dependencies come from dpkg-shlibdeps; the rest is what the product needs to run.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# Our Postfix wiring reads mx-milter's domain table as an lmdb: table, which Debian's Postfix
# opens only with postfix-lmdb installed (without it every RCPT gets 451 4.3.0). The
# alternative keeps the package installable beside Sendmail, which needs no Postfix tables.
# init-system-helpers: deb-systemd-helper/-invoke in the maintainer scripts.
set(CPACK_DEBIAN_PACKAGE_DEPENDS
    "postfix (>= 3.5) | mail-transport-agent, postfix-lmdb | sendmail-bin, systemd (>= 247), \
init-system-helpers (>= 1.52)")
# libjs-*: the web console's stylesheet and charts (mx-console serves them from /usr/share/javascript).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS
    "postfix (>= 3.5), lmdb-utils, swaks, libjs-bootstrap5, libjs-chart.js")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "pflogsumm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${MX_PKG_DIR}/debian/conffiles ${MX_PKG_DIR}/debian/postinst
    ${MX_PKG_DIR}/debian/prerm ${MX_PKG_DIR}/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_STRIP_FILES ON)
include(CPack)
