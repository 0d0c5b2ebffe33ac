"""The LLM behind one interface (``engines.Engine``): the transformers engine this project runs itself (prompts
prefilled, decode steps batched across requests and, on a GPU, replayed as CUDA graphs) and the engines that
delegate to vLLM or a remote OpenAI-compatible server. Nothing outside this package reaches into transformers'
cache."""
