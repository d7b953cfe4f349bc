/* Shared library for the signature tests (stamped at link time). */
int siglib_value(void) { return 42; }
