/* plugin-auth: the original's example auth plugin (seed 000) for the Propeller manager.
 * authorize: the task name must not be empty; user_id is required for create and start; a start is allowed only for
 * the user who created the task (env PROPELLER_CREATED_BY, set by enrich_task below). The "system" user (cron and
 * workflow starts) passes the creator check.
 * enrich_task: sets PROPELLER_PLUGIN_AUTHZ=plugin-auth and PROPELLER_CREATED_BY=<user_id>. */
#include "../plugin.h"

EXPORT("authorize") int64_t authorize(const char *req, int32_t len) {
    char name[256], user[256], action[32], owner[256];
    json_string(req, (size_t)len, "name", name, sizeof name);
    json_string(req, (size_t)len, "user_id", user, sizeof user);
    json_string(req, (size_t)len, "action", action, sizeof action);
    int start = strcmp(action, "start") == 0;
    if (name[0] == 0) return answer("{\"allow\":false,\"reason\":\"task name must not be empty\"}");
    if ((start || strcmp(action, "create") == 0) && user[0] == 0) {
        out_t o = {0};
        out_str(&o, "{\"allow\":false,\"reason\":");
        char reason[64] = "user_id is required for ";
        strcat(reason, action);
        out_json_string(&o, reason);
        out_str(&o, "}");
        return out_finish(&o);
    }
    if (start && strcmp(user, "system") != 0 && json_string(req, (size_t)len, "PROPELLER_CREATED_BY", owner, sizeof owner)
        && strcmp(owner, user) != 0) {
        return answer("{\"allow\":false,\"reason\":\"only the creator of the task may start it\"}");
    }
    return answer("{\"allow\":true}");
}

EXPORT("enrich_task") int64_t enrich_task(const char *req, int32_t len) {
    char user[256];
    json_string(req, (size_t)len, "user_id", user, sizeof user);
    out_t o = {0};
    out_str(&o, "{\"env\":{\"PROPELLER_PLUGIN_AUTHZ\":\"plugin-auth\"");
    if (user[0]) {
        out_str(&o, ",\"PROPELLER_CREATED_BY\":");
        out_json_string(&o, user);
    }
    out_str(&o, "}}");
    return out_finish(&o);
}
