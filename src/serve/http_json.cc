#include "serve/http_json.h"
