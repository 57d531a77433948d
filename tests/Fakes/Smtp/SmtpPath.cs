namespace Crm.Fakes.Smtp;

/// <summary>Parses the "FROM:&lt;path&gt; params" / "TO:&lt;path&gt; params" argument of MAIL and RCPT.</summary>
internal static class SmtpPath
{
    public static bool TryParse(string argument, string keyword, out string address, out string[] parameters)
    {
        address = "";
        parameters = [];
        if (!argument.StartsWith(keyword, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        // RFC 5321 forbids a space after the colon, but common servers tolerate it; so do we.
        var rest = argument[keyword.Length..].TrimStart();
        var close = rest.IndexOf('>', StringComparison.Ordinal);
        if (!rest.StartsWith('<') || close < 0)
        {
            return false;
        }
        address = StripSourceRoute(rest[1..close]);
        parameters = rest[(close + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return true;
    }

    public static bool IsAscii(string address) => address.All(char.IsAscii);

    // "<@relay1,@relay2:user@host>" is obsolete but legal; the mailbox is after the colon (RFC 5321 §4.1.2).
    private static string StripSourceRoute(string path) =>
        path.StartsWith('@') && path.Contains(':', StringComparison.Ordinal) ? path[(path.IndexOf(':', StringComparison.Ordinal) + 1)..] : path;
}
