/* Echo: every message goes back to its sender unchanged; binary stays binary.
 * The C twin of examples/echo (same behaviour, checked by the same tests). */
#include "gw.h"

GW_ON_MESSAGE(id, id_len, data, len, flags) {
    (void)id;
    (void)id_len;
    gw_send_to_current_client(data, (gw_u32)len, flags & GW_FLAG_BINARY);
}
