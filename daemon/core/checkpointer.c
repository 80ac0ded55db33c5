/* checkpointer.c — the WAL copied back on a thread of its own (see checkpointer.h). */
#include "checkpointer.h"

#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "funnel/error.h"

#define BUSY_WAIT_MS 5000 /* a checkpoint waits this long for the writer's brief locks */

struct funnel_checkpointer {
    sqlite3 *db; /* the thread's own connection */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled on a request, a finished run and stop */
    bool asked;        /* a checkpoint is wanted */
    bool running;      /* the thread is checkpointing now */
    bool stop;         /* destroy: finish and leave */
    uint64_t failed;   /* failures since the last wait */
    char err[256];     /* message of the last failure */
};

static void *checkpointer_main(void *arg)
{
    funnel_checkpointer_t *ck = arg;
    pthread_mutex_lock(&ck->mu);
    for (;;) {
        while (!ck->asked && !ck->stop)
            pthread_cond_wait(&ck->cv, &ck->mu);
        if (!ck->asked)
            break;
        ck->asked = false;
        ck->running = true;
        pthread_mutex_unlock(&ck->mu);
        int rc = sqlite3_wal_checkpoint_v2(ck->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
        pthread_mutex_lock(&ck->mu);
        ck->running = false;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY) {
            ck->failed++;
            snprintf(ck->err, sizeof ck->err, "%s", sqlite3_errmsg(ck->db));
        }
        pthread_cond_broadcast(&ck->cv);
    }
    pthread_mutex_unlock(&ck->mu);
    return NULL;
}

int funnel_checkpointer_new(const char *path, funnel_checkpointer_t **out, char *err,
                            size_t err_len)
{
    *out = NULL;
    funnel_checkpointer_t *ck = calloc(1, sizeof *ck);
    if (!ck) {
        snprintf(err, err_len, "out of memory");
        return FUNNEL_ENOMEM;
    }
    int rc = FUNNEL_ESTORE;
    if (sqlite3_open_v2(path, &ck->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, err_len, "checkpointer: cannot open %s: %s", path,
                 ck->db ? sqlite3_errmsg(ck->db) : "out of memory");
        goto fail_db;
    }
    sqlite3_busy_timeout(ck->db, BUSY_WAIT_MS);
    /* A connection knows the file is in WAL mode only once it has read it: before that a
     * checkpoint does nothing and says so with -1 frames. */
    if (sqlite3_exec(ck->db, "PRAGMA journal_mode", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, err_len, "checkpointer: cannot read %s: %s", path, sqlite3_errmsg(ck->db));
        goto fail_db;
    }
    if (pthread_mutex_init(&ck->mu, NULL)) {
        snprintf(err, err_len, "checkpointer: cannot set up its lock");
        goto fail_db;
    }
    if (pthread_cond_init(&ck->cv, NULL)) {
        snprintf(err, err_len, "checkpointer: cannot set up its condition");
        goto fail_cv;
    }
    /* Signals are the loop's business: the thread starts with all of them blocked, so none is
     * ever delivered to it (e.g. while the loop, shutting down, has closed its handlers). */
    sigset_t all, was;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &was);
    int started = pthread_create(&ck->thread, NULL, checkpointer_main, ck);
    pthread_sigmask(SIG_SETMASK, &was, NULL);
    if (started) {
        snprintf(err, err_len, "checkpointer: cannot start its thread");
        goto fail_thread;
    }
    *out = ck;
    return 0;

fail_thread:
    pthread_cond_destroy(&ck->cv);
fail_cv:
    pthread_mutex_destroy(&ck->mu);
fail_db:
    sqlite3_close(ck->db);
    free(ck);
    return rc;
}

/* The failures since the last call, and the last one's message; the caller holds mu. */
static uint64_t failures_take(funnel_checkpointer_t *ck, char *err, size_t err_len)
{
    uint64_t failed = ck->failed;
    ck->failed = 0;
    if (failed && err)
        snprintf(err, err_len, "%s", ck->err);
    return failed;
}

uint64_t funnel_checkpointer_request(funnel_checkpointer_t *ck, char *err, size_t err_len)
{
    pthread_mutex_lock(&ck->mu);
    ck->asked = true;
    pthread_cond_broadcast(&ck->cv);
    uint64_t failed = failures_take(ck, err, err_len);
    pthread_mutex_unlock(&ck->mu);
    return failed;
}

bool funnel_checkpointer_busy(funnel_checkpointer_t *ck)
{
    pthread_mutex_lock(&ck->mu);
    bool busy = ck->asked || ck->running;
    pthread_mutex_unlock(&ck->mu);
    return busy;
}

uint64_t funnel_checkpointer_wait(funnel_checkpointer_t *ck, char *err, size_t err_len)
{
    pthread_mutex_lock(&ck->mu);
    while (ck->asked || ck->running)
        pthread_cond_wait(&ck->cv, &ck->mu);
    uint64_t failed = failures_take(ck, err, err_len);
    pthread_mutex_unlock(&ck->mu);
    return failed;
}

void funnel_checkpointer_destroy(funnel_checkpointer_t **ckp)
{
    if (!ckp || !*ckp)
        return;
    funnel_checkpointer_t *ck = *ckp;
    pthread_mutex_lock(&ck->mu);
    ck->stop = true;
    pthread_cond_broadcast(&ck->cv);
    pthread_mutex_unlock(&ck->mu);
    pthread_join(ck->thread, NULL);
    pthread_cond_destroy(&ck->cv);
    pthread_mutex_destroy(&ck->mu);
    sqlite3_close(ck->db);
    free(ck);
    *ckp = NULL;
}
