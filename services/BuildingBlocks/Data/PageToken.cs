using System.Text;
using Crm.BuildingBlocks.Errors;

namespace Crm.BuildingBlocks.Data;

/// <summary>Opaque keyset page tokens: the last key of a page, base64url-encoded.</summary>
public static class PageToken
{
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 1000;

    public static string Encode(string lastKey) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(lastKey)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    public static string? Decode(string? token, string field = "page_token")
    {
        if (string.IsNullOrEmpty(token)) return null;
        try
        {
            var s = token.Replace('-', '+').Replace('_', '/');
            s = s.PadRight(s.Length + (4 - s.Length % 4) % 4, '=');
            return Encoding.UTF8.GetString(Convert.FromBase64String(s));
        }
        catch (FormatException)
        {
            throw new InvalidArgumentException(field, "is not a token returned by a previous call");
        }
    }

    public static int Size(int requested, string field = "page_size")
    {
        if (requested < 0) throw new InvalidArgumentException(field, "must not be negative");
        return requested == 0 ? DefaultPageSize : Math.Min(requested, MaxPageSize);
    }
}
