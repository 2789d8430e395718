/* trivial_milter: the floor any libmilter milter pays, for scripts/bench-milter.
 *
 * Usage: trivial_milter unix:PATH [MAILBOXES]
 *   without MAILBOXES: accepts every RCPT (variant T of the end-to-end run: the same Postfix
 *   with a milter that decides nothing);
 *   with MAILBOXES: answers like mx-milter for milter_bench's addresses — "<u<n>@...>" with
 *   n < MAILBOXES continues, anything else gets "550 5.1.1 <addr>: Recipient address
 *   rejected: User unknown" — from one string compare and one strtol, no store, no log.
 * Negotiates exactly what mx-milter negotiates (same skipped steps, no reply to CONNECT and
 * MAIL, only the queue id macro), so the difference measured is mx-milter's own work.
 * Runs until SIGTERM/SIGINT (libmilter's signal handling). Not installed; bench only.
 */
#include <libmilter/mfapi.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long mailboxes = -1; /* < 0: accept everything */

static sfsistat on_negotiate(SMFICTX* ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long* pf0, unsigned long* pf1,
                             unsigned long* pf2, unsigned long* pf3) {
    (void)f2;
    (void)f3;
    unsigned long steps = SMFIP_NOHELO | SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NOEOH |
                          SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NR_CONN | SMFIP_NR_MAIL;
    *pf0 = 0;
    *pf1 = f1 & steps;
    if (f0 & SMFIF_SETSYMLIST) {
        *pf0 |= SMFIF_SETSYMLIST;
        smfi_setsymlist(ctx, SMFIM_CONNECT, "{client_addr}");
        smfi_setsymlist(ctx, SMFIM_ENVFROM, "i");
        smfi_setsymlist(ctx, SMFIM_ENVRCPT, "i");
        smfi_setsymlist(ctx, SMFIM_EOM, "i");
    }
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat on_connect(SMFICTX* ctx, char* host, struct sockaddr* addr) {
    (void)ctx;
    (void)host;
    (void)addr;
    return SMFIS_NOREPLY;
}

static sfsistat on_envfrom(SMFICTX* ctx, char** argv) {
    (void)ctx;
    (void)argv;
    return SMFIS_NOREPLY;
}

static sfsistat on_envrcpt(SMFICTX* ctx, char** argv) {
    if (mailboxes < 0) return SMFIS_CONTINUE;
    const char* a = argv[0];
    if (strncmp(a, "<u", 2) == 0) {
        char* end = NULL;
        long n = strtol(a + 2, &end, 10);
        if (end != a + 2 && *end == '@' && n < mailboxes) return SMFIS_CONTINUE;
    }
    char text[600];
    snprintf(text, sizeof text, "%.500s: Recipient address rejected: User unknown", a);
    smfi_setreply(ctx, "550", "5.1.1", text);
    return SMFIS_REJECT;
}

static sfsistat on_eom(SMFICTX* ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char** argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: trivial_milter unix:PATH [MAILBOXES]\n");
        return 2;
    }
    if (argc > 2) mailboxes = atol(argv[2]);
    struct smfiDesc desc;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = "trivial";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_connect = on_connect;
    desc.xxfi_envfrom = on_envfrom;
    desc.xxfi_envrcpt = on_envrcpt;
    desc.xxfi_eom = on_eom;
    desc.xxfi_negotiate = on_negotiate;
    if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_settimeout(30) != MI_SUCCESS ||
        smfi_setbacklog(128) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS ||
        smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "trivial_milter: cannot set up %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
