/* keygen.c — funnelctl keygen NAME: a new CURVE identity for a tool or for funneld. */
#include "funnelctl.h"

#include "funnel/keyfile.h"

#include <stdio.h>

int fctl_cmd_keygen(fctl_t *ctl)
{
    funnel_keypair_t kp;
    char err[512];
    if (funnel_keypair_new(&kp)) {
        fprintf(stderr, "funnelctl: keygen: this libzmq was built without CURVE support\n");
        return FCTL_REFUSED;
    }
    int rc = funnel_keyfile_write(ctl->args[0], &kp, err, sizeof err);
    funnel_keypair_wipe(&kp);
    if (rc) {
        fprintf(stderr, "funnelctl: keygen: %s\n", err);
        return FCTL_REFUSED;
    }
    /* The public key alone on stdout, so a script can paste it into the clients file. */
    printf("%s\n", kp.public_key);
    fprintf(stderr, "funnelctl: wrote %s.key (secret, mode 0600) and %s.pub (public)\n",
            ctl->args[0], ctl->args[0]);
    return FCTL_OK;
}
