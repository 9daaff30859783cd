/* spill-server's HTTP side: libmicrohttpd with a thread per connection, the routes of the OpenAI API
 * (/v1/completions, /v1/chat/completions, /v1/models) plus /health and /metrics, over one scheduler.
 * A streamed answer is server-sent events; a client that goes away cancels its request. */
#ifndef SPILL_SERVER_HTTP_H
#define SPILL_SERVER_HTTP_H

#include "engine.h"
#include "scheduler.h"

typedef struct spill_http spill_http;

typedef struct spill_http_params {
    const char *host;       /* the address to listen on: "127.0.0.1" (the default), "0.0.0.0", ... */
    int port;               /* 0: any free port (spill_http_port says which) */
    spill_engine *engine;
    spill_sched *sched;
    const char *model_name; /* what /v1/models lists and the answers name */
    size_t max_body;        /* bytes of a request body; 0 = 8 MiB */
    int max_connections;    /* 0 = 256 */
    int retry_after_s;      /* what a 429/503 asks the client to wait; 0 = 1 */
} spill_http_params;

int spill_http_start(spill_http **out, const spill_http_params *p, spill_err *err);
int spill_http_port(const spill_http *h);
/* Stop accepting connections; requests that still arrive get 503 with Retry-After. */
void spill_http_drain(spill_http *h);
/* Requests whose answers are not fully sent yet. */
int spill_http_active(spill_http *h);
/* Close every connection and free; NULL is a no-op. */
void spill_http_stop(spill_http *h);

#endif
