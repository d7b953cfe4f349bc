"""The software census: where installed software comes from (Spack, Lmod, Python
distributions, Debian packages), stored beside the records, and the attribution of the
recorded executables and libraries to those packages (`ogrt census update`)."""
