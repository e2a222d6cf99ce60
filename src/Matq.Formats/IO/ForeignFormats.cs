// Contract: recognises model files matq does not read as weights (GGUF, ONNX) by their first bytes, so a reader that
// expected safetensors says what the file is and which tools take it, instead of "corrupt safetensors header".
namespace Matq.Formats.IO;

public static class ForeignFormats
{
    /// <summary>"GGUF", "ONNX" or null (anything else, including safetensors) from a file's first 16 bytes.</summary>
    public static string? Detect(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 4 && head[..4].SequenceEqual("GGUF"u8)) return "GGUF";
        // safetensors: u64 header length, then the JSON header's '{'. ONNX: a protobuf ModelProto that opens with
        // ir_version (field 1, varint: tag 0x08, a small version) followed by another ModelProto field's tag.
        bool safetensors = head.Length > 8 && head[8] == (byte)'{';
        if (!safetensors && head.Length >= 3 && head[0] == 0x08 && head[1] is >= 1 and <= 32
            && head[2] is 0x12 or 0x1A or 0x22 or 0x28 or 0x32 or 0x3A or 0x42 or 0x72)
            return "ONNX";
        return null;
    }

    /// <summary>The one-line refusal for a GGUF or ONNX file given where safetensors / .matq is read; null otherwise.</summary>
    public static string? Refusal(string path, ReadOnlySpan<byte> head) => Detect(head) switch
    {
        "GGUF" => $"{path} is a GGUF file: llama.cpp runs it and `matq inspect` lists it; this command reads an HF folder, a .safetensors file or a .matq artifact",
        "ONNX" => $"{path} is an ONNX model: ONNX Runtime runs it; matq's commands read an HF folder, a .safetensors file or a .matq artifact",
        _ => null,
    };
}
