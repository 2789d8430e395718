#!/usr/bin/env python3
"""Writes the hand-written odd messages of corpus/odd/ (run inside that folder). One or more
per rule of the JSON contract (docs/targets.md "What the JSON contains"): invalid types, header
blocks without the empty line, no headers at all, inline text parts with filenames, charsets
that lie or are unknown, message/rfc822, alternative/related, RFC 2231 and RFC 2047 filenames,
address groups. The files are committed; this script documents how they were made."""
import base64


class S(str):
    """A str whose + with bytes yields bytes (headers as text, 8-bit bodies as bytes)."""

    def __add__(self, o):
        if isinstance(o, bytes):
            return self.encode() + o
        return S(str.__add__(self, o))
H = "From: Alice Example <alice@example.test>\nTo: Bob <bob@example.test>\nDate: Tue, 1 Dec 2026 10:00:00 +0000\nMessage-ID: <%s@example.test>\n"
def w(name, s, crlf=False):
    b = s.encode("utf-8") if isinstance(s, str) else s
    if crlf:
        b = b.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    open(name, "wb").write(b)
def h(n, subj): return S((H % n) + "Subject: %s\n" % subj)

w("content-type-text-no-subtype.eml", h(1,"no subtype") + "MIME-Version: 1.0\nContent-Type: text\n\nHello, this is the text.\n")
w("content-type-text-no-subtype-params.eml", h(2,"no subtype, params") + "MIME-Version: 1.0\nContent-Type: text; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGr\u00fc\u00dfe aus K\u00f6ln\n")
w("content-type-garbage.eml", h(3,"garbage type") + "MIME-Version: 1.0\nContent-Type: this is not a type\n\nStill text.\n")
w("header-block-no-blank-line.eml", h(4,"no blank line") + "This line is not a header, so the body starts here.\nSecond line.\n")
w("header-block-no-blank-line-crlf.eml", h(5,"no blank line crlf") + "Hi Bob,\nthe body starts at the greeting.\n", crlf=True)
w("no-headers-digest-fragment.eml", "This is a fragment of a digest without any header.\nIt is all body text.\n")
w("no-headers-blank-first.eml", "\nBody after an empty header block.\n")
w("mixed-inline-text-with-filename.eml", h(6,"inline text with filename") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=us-ascii; name="message.txt"
Content-Disposition: inline; filename="message.txt"

The message text, sent by a client that names its inline parts.
--b1
Content-Type: text/plain; charset=us-ascii; name="footer.txt"
Content-Disposition: inline; filename="footer.txt"

Footer part.
--b1
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--b1--
""")
w("mixed-text-attachment.eml", h(7,"text attachment") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Body text.
--b1
Content-Type: text/plain; charset=utf-8; name="notes.txt"
Content-Disposition: attachment; filename="notes.txt"

These are attached notes, not body text.
--b1--
""")
w("charset-unknown.eml", h(8,"unknown charset") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=x-no-such-charset\nContent-Transfer-Encoding: 8bit\n\n".encode() + "Caf\u00e9 cr\u00e8me\n".encode("latin-1"))
w("charset-unknown-utf8.eml", h(9,"unknown charset utf8") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=x-unknown\nContent-Transfer-Encoding: 8bit\n\nCaf\u00e9 cr\u00e8me\n")
w("charset-lying-usascii-utf8.eml", h(10,"us-ascii but utf-8") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 8bit\n\nSch\u00f6ne Gr\u00fc\u00dfe\n")
w("charset-lying-usascii-latin1.eml", h(11,"us-ascii but latin-1") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 8bit\n\n".encode() + "Sch\u00f6ne Gr\u00fc\u00dfe \u20ac\n".encode("cp1252"))
w("charset-missing-8bit.eml", h(12,"no charset 8bit") + "MIME-Version: 1.0\nContent-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n".encode() + "na\u00efve fa\u00e7ade\n".encode("latin-1"))
w("charset-utf8-invalid.eml", h(13,"broken utf-8") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n".encode() + b"ok \xc3\xa9 then bad \xe9 byte\n")
w("charset-iso-2022-jp.eml", h(14,"=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=ISO-2022-JP\nContent-Transfer-Encoding: 7bit\n\n".encode() + "\u3053\u3093\u306b\u3061\u306f\u3001\u4e16\u754c\n".encode("iso-2022-jp"))
w("charset-windows-1252.eml", h(15,"cp1252") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=windows-1252\nContent-Transfer-Encoding: quoted-printable\n\nPrice: 5 =80, =93quoted=94\n")
w("charset-koi8r-base64.eml", h(16,"=?koi8-r?B?8NLJ18XU?=") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=koi8-r\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes("\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440\n".encode("koi8-r")).decode())
inner = "From: Carol <carol@example.test>\nTo: alice@example.test\nSubject: the forwarded one\nMessage-ID: <inner@example.test>\n\nForwarded body.\n"
w("message-rfc822-attachment.eml", h(17,"Fwd: the forwarded one") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

See the attached message.
--b1
Content-Type: message/rfc822
Content-Disposition: attachment; filename="forwarded.eml"

""" + inner + "--b1--\n")
w("message-rfc822-inline.eml", h(18,"Fwd inline") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

Forwarded inline below.
--b1
Content-Type: message/rfc822

""" + inner + "--b1--\n")
w("alternative-html-text.eml", h(19,"alternative") + """MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Plain version with a soft=
 break and =C3=BCmlaut.
--alt
Content-Type: text/html; charset=utf-8

<html><body><p>HTML version</p></body></html>
--alt--
""")
w("alternative-related-start.eml", h(20,"related with start") + """MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain

Plain.
--alt
Content-Type: multipart/related; boundary="rel"; start="<html-part@x>"; type="text/html"

--rel
Content-Type: image/png; name="logo.png"
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel
Content-Type: text/html
Content-ID: <html-part@x>

<p>HTML with <img src="cid:logo@x"></p>
--rel--
--alt--
""")
w("html-only.eml", h(21,"html only") + "MIME-Version: 1.0\nContent-Type: text/html; charset=iso-8859-1\nContent-Transfer-Encoding: 8bit\n\n".encode() + "<p>\u00e9t\u00e9</p>\n".encode("latin-1"))
w("rfc2231-filename.eml", h(22,"rfc 2231") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

Body.
--b1
Content-Type: application/octet-stream
Content-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe%20aus%20K%C3%B6ln.txt
Content-Transfer-Encoding: base64

aGFsbG8=
--b1
Content-Type: application/octet-stream
Content-Disposition: attachment;
 filename*0*=iso-8859-1'de'Sehr%20langer%20Dateiname%20mit%20;
 filename*1*=%DCmlaut%20und;
 filename*2=" Fortsetzung.bin"
Content-Transfer-Encoding: base64

aGFsbG8=
--b1--
""")
w("encoded-word-filename.eml", h(23,"encoded-word filenames") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

Body.
--b1
Content-Type: application/pdf; name="=?UTF-8?B?UmVjaG51bmcgTcOkcnoucGRm?="
Content-Disposition: attachment; filename="=?UTF-8?B?UmVjaG51bmcgTcOkcnoucGRm?="
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--b1
Content-Type: image/jpeg; name="=?iso-8859-1?Q?f=F6to.jpg?="
Content-Transfer-Encoding: base64

/9j/4AAQ
--b1--
""")
w("mbox-from-line.eml", "From alice@example.test Tue Dec  1 10:00:00 2026\n" + h(24,"mbox line") + "\nBody after an mbox separator.\n")
w("no-content-type.eml", h(25,"no content type") + "\nPlain body without MIME headers.\n")
w("digest.eml", h(26,"digest") + """MIME-Version: 1.0
Content-Type: multipart/digest; boundary="d"

--d

From: one@example.test
Subject: first

First digested message.
--d

From: two@example.test
Subject: second

Second digested message.
--d--
""")
w("addresses-groups.eml", "From: =?UTF-8?Q?M=C3=BCller=2C_Hans?= <hans@example.test>\nTo: undisclosed-recipients:;\nCc: Team: a@example.test, \"B, Person\" <b@EXAMPLE.test>;, c@example.test (comment)\nSubject: groups\nMessage-ID: <27@example.test>\n\nBody.\n")
w("inline-image-with-filename.eml", h(28,"inline image") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain

Look:
--b1
Content-Type: image/gif; name="dot.gif"
Content-Disposition: inline; filename="dot.gif"
Content-Transfer-Encoding: base64

R0lGODlhAQABAAAAACw=
--b1
Content-Type: text/plain

Text after the image.
--b1--
""")
w("crlf-multipart.eml", h(29,"crlf") + "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\nContent-Type: text/plain\n\nLine one\nLine two\n--b1\nContent-Type: text/csv; name=\"t.csv\"\nContent-Disposition: attachment; filename=\"t.csv\"\n\na,b\n1,2\n--b1--\n", crlf=True)
w("attachment-only.eml", h(30,"attachment only") + "MIME-Version: 1.0\nContent-Type: text/plain; name=\"only.txt\"\nContent-Disposition: attachment; filename=\"only.txt\"\n\nThe only part is an attachment.\n")
w("uppercase-types.eml", h(31,"upper case") + "MIME-Version: 1.0\nContent-Type: Multipart/Mixed; Boundary=\"b1\"\n\n--b1\nContent-Type: TEXT/PLAIN; CHARSET=UTF-8\n\nUpper case type.\n--b1\nContent-Type: Application/PDF; NAME=\"A.PDF\"\nContent-Disposition: ATTACHMENT\n\nx\n--b1--\n")
w("base64-text-utf16.eml", h(32,"utf-16 text") + "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-16\nContent-Transfer-Encoding: base64\n\n" + base64.encodebytes("Hello UTF-16 \u00e4\n".encode("utf-16")).decode())
w("subject-encoded-mixed.eml", "From: a@example.test\nTo: b@example.test\nSubject: =?utf-8?q?Caf=C3=A9?= and =?iso-8859-1?b?Z3L8w58=?= plain\nMessage-ID: <33@example.test>\n\nBody.\n")
w("nested-mixed-in-alternative.eml", h(34,"nested") + """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain

First plain.
--alt
Content-Type: text/html

<b>First html</b>
--alt--
--outer
Content-Type: text/html; name="extra.html"
Content-Disposition: inline

<i>second html, inline</i>
--outer--
""")
