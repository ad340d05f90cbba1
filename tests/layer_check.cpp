// layer_check.cpp — the empty program each library's <lib>_layer_check target links the whole
// library into (CMakeLists.txt, copper_library). The build fails when a library calls into a
// layer it does not declare, e.g. nn/ into tasks/.
int main() { return 0; }
