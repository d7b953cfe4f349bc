/* A plugin for dlopen_close: state that vanishes with dlclose. */
static char name_buffer[64] = "plugin-data";
const char *plugin_hello(void) { return name_buffer; }
