/* A minimal shared object, copied many times under different names by the tests. */
int ogrt_test_tiny_value(void) { return 42; }
