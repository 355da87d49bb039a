/* checkpoint_py.c: Python binding of checkpoint I/O (filled in by the checkpoint work). */
#include "lnn_ext.h"

int lnn_register_checkpoint(PyObject *m) { (void)m; return 0; }
